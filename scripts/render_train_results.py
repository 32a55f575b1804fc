#!/usr/bin/env python3
"""Renders the ZeroQAT sections of docs/RESULTS.md (<!-- BEGIN train -->) and docs/PERF.md
(<!-- BEGIN train-step-cost -->) from the run logs scripts/train_results.sh keeps in
docs/data/train/. Baselines come from docs/data/quant-quick (same 8 test windows of 2048).
Usage: scripts/render_train_results.py docs/data/train"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from docsplice import splice  # noqa: E402

d = sys.argv[1] if len(sys.argv) > 1 else "docs/data/train"
quick = os.path.join(os.path.dirname(d.rstrip("/")), "quant-quick")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run(name):
    base = os.path.join(d, name)
    fin = load(os.path.join(base, "final.json"))
    if not fin:
        return None
    cfg = load(os.path.join(base, "config.json"))
    summ = load(os.path.join(base, "summary.json")) or {}
    evals, vals = [], []
    with open(os.path.join(base, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "eval_ppl" in j:
                evals.append((j["step"], j["eval_ppl"]))
            if "val_ppl" in j:
                vals.append((j["step"], j["val_ppl"]))
    cmd = open(os.path.join(base, "cmd")).read().strip() if os.path.exists(os.path.join(base, "cmd")) else ""
    cmd = cmd.replace(os.getcwd() + "/", "")
    mach = load(os.path.join(base, "machine.json")) or {}
    return dict(name=name, fin=fin, cfg=cfg, summ=summ, evals=evals, vals=vals, cmd=cmd, mach=mach)


def qppl(spec, method):
    j = load(os.path.join(quick, f"ppl_wiki_{spec}_{method}.json"))
    return j["ppl"] if j else None


def f2(x):
    return "—" if x is None else f"{x:.2f}"


def hms(s):
    return f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def machine(r):
    m = r["mach"]
    cpu = m.get("cpu", "?").replace("(R)", "").replace(" Processor", "")
    return f"{cpu}, {m.get('threads', '?')} thr"


def trained(c):
    """What a run learns, each group's learning rate and eps: 'W 1e-08 (0.001); LWC 1e-05
    (0.01)'."""
    parts = []
    for key, label in (("weights", "W"), ("clip", "LWC"), ("smooth", "LET"),
                       ("act_clip", "act. clip")):
        if not c.get(f"train_{key}"):  # train_act_clip: absent in runs from before it
            continue
        lr = c["lr"] if key == "weights" else c[f"lr_{key}"]
        eps = c["eps"] if key == "weights" else c[f"eps_{key}"]
        parts.append(f"{label} {lr:g} ({eps:g})")
    return "; ".join(parts)


MAIN = ["w4a4", "w2a16g64", "w2a16g64-lowlr", "w4a4-lwc-let", "w2a16g64-lwc-let", "w6a6",
        "w6a6-lwc-let", "w6a6-rot-lwc", "w4a4-rot-lwc", "w4a4-rot-w-lr1e-5", "w4a4-rot-w-lr1e-6",
        "w4a4-rot-aclip", "w4a4-rot-aclip-search"]
fp = (load(os.path.join(quick, "ppl_wiki_fp.json")) or {}).get("ppl")
lines = [
    "## ZeroQAT training (issue 4)",
    "",
    "Made by `bash scripts/train_results.sh` (machine and threads of each run in its wall "
    "column); logs, seed logs and curves in `docs/data/train/`. "
    "PPL is WikiText-2 test, GPTQ protocol, ctx 2048: *subset* = the first 8 windows (16,376 "
    "tokens), the protocol of the quick quantization table above, so its baselines compare "
    "directly. *start* is the run's own step 0: the init, exactly (its clipping ratios as LWC "
    "logits). Training windows: bsz x ctx tokens per step, alternating WikiText-2 valid and "
    "C4-demo documents 0-149; learning rates and eps as in the commands below. *+rot*: "
    "`--rotate` (Hadamard rotation before the init; the init then has no LET, so LET does not "
    "train). The baseline column includes the rotated PTQ rows (rtn-rot, gptq-rot).",
    "",
    "| run | qspec | trained: lr (eps) | steps x bsz x ctx | wall | start (subset) | end (subset) | "
    "best PTQ baseline (subset) | init (quick table) | end < start | end < baseline |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
cmds, fulls = [], []
w6 = []
yn = lambda b: "yes" if b else "**no**"
for name in MAIN:
    r = run(name)
    if not r:
        continue
    c = r["cfg"]
    spec = c["qspec"]
    # PTQ baselines, the rotated ones (quantize --rotate) included.
    base = [(m, qppl(spec, m)) for m in ("rtn", "smoothquant", "gptq", "rtn-rot", "gptq-rot")]
    base = [b for b in base if b[1] is not None]
    best = min(base, key=lambda b: b[1]) if base else None
    # The quick table has no init with searched activation clipping (baseline-here has it).
    init_row = None if c.get("init_act_clip") else "init-rot" if c.get("rotate") else "init"
    start = r["evals"][0][1] if r["evals"] else None
    end = r["evals"][-1][1] if r["evals"] else None
    if r["fin"].get("final_eval") == "full":
        fulls.append(f"{name}: {r['fin']['final_ppl']:.2f} over all {r['fin']['final_windows']} windows")
    lines.append(
        f"| {name} | {spec}{' +rot' if c.get('rotate') else ''} | {trained(c)} | {c['steps']} x {c['bsz']} x {c['ctx']} | "
        f"{hms(r['fin']['seconds'])} ({machine(r)}) | "
        f"{f2(start)} | **{f2(end)}** | "
        f"{(best[0] + ' ' + f2(best[1])) if best else '—'} | {f2(qppl(spec, init_row) if init_row else None)} | "
        f"{yn(end is not None and start is not None and end < start)} | "
        f"{yn(end is not None and best is not None and end < best[1]) if best else '—'} |")
    if spec == "W6A6" and fp and end:
        w6.append(f"{name} {100 * (end / fp - 1):+.1f}%")
    cmds.append(r["cmd"])
below = []
for name in MAIN:
    r = run(name)
    if r and len(r["evals"]) > 2:
        s0 = r["evals"][0][1]
        later = [p for st, p in r["evals"][1:]]
        below.append(f"{name} {sum(p < s0 for p in later)} of {len(later)} "
                     f"({f2(min(later))} .. {f2(max(later))})")
if below:
    lines += ["", "Evaluations after step 0 that sit below the run's start (their range): " +
              "; ".join(below) + ". One end-of-run number is one draw from a curve this rough."]
if fp:
    lines += ["", f"FP16 reference on the same subset: {fp:.2f}."]
if w6:
    lines += ["", "W6A6 ends, from FP16 on the subset: " + ", ".join(w6) + "."]
if fulls:
    lines += ["", "Full test set at the end: " + "; ".join(fulls) + "."]
# Activation clipping runs: what the ratios learned, and the validation PPL on the training text.
for name in MAIN:
    r = run(name)
    if not r or not r["fin"].get("act_clip"):
        continue
    ac = r["fin"]["act_clip"]
    sites = ["q/k/v", "o", "gate/up", "down"]
    first = ", ".join(f"{s} {v:.3f}" for s, v in zip(sites, ac[0]))
    rng = [f"{s} {min(l[i] for l in ac):.3f}..{max(l[i] for l in ac):.3f}"
           for i, s in enumerate(sites)]
    val = " → ".join(f"{p:.2f} (step {st})" for st, p in r["vals"])
    start = ("the init's search" if r["cfg"].get("init_act_clip") else "1")
    lines += ["", f"`{name}`: activation clipping ratios at the end (from {start} at the start; "
              f"every layer moves alike, one z per site): {first}"
              + ("" if all(l == ac[0] for l in ac) else f" (layer 0; range over layers: {', '.join(rng)})")
              + "." + (f" Validation PPL on {r['cfg'].get('val_windows')} windows of the training "
                       f"text (`--val-windows`, not the test text): {val}." if val else "")]
here = os.path.join(d, "baseline-here")
bh = load(os.path.join(here, "ppl_wiki_W4A4_rtn-rot.json"))
if bh:
    m = load(os.path.join(here, "machine.json")) or {}
    cpu = m.get("cpu", "?")
    q = qppl("W4A4", "rtn-rot")
    # A CPU's model name does not tell AVX2 from AVX-512 machines: a run counts as this machine's
    # only when its summary records the same ISA (runs from before zqat recorded it never do).
    runs_here = [n for n in MAIN if (r := run(n)) and r["mach"].get("cpu") == cpu
                 and r["summ"].get("isa") == bh.get("isa")]
    lines += ["", f"The best W4A4 baseline scored again on {cpu} ({m.get('threads', '?')} threads, "
              f"`RUNS=baseline-here`)"
              + (f", the machine of {', '.join(runs_here)}" if runs_here else "") + ": "
              f"rtn-rot {bh['ppl']:.2f} on the subset (quick table: {f2(q)}, ISA "
              f"{bh.get('isa', '?')} here). At A4 the PPL of one model state moves by a few "
              "percent with the CPU's float rounding (the AVX2 and AVX-512 GEMMs sum in another "
              "order; every run is bit-identical for any thread count on one machine), and the "
              "init's grid searches can pick other ratios from such differences: a run's start is "
              "its own step 0 on its own machine, which is why it can differ from the quick "
              "table's init."]
    ih = load(os.path.join(here, "ppl_wiki_W4A4_init-rot-aclip.json"))
    if ih:
        lines += ["", f"The same machine's rotated init with the activation clipping ratios "
                  f"grid-searched instead of trained (`quantize --method init --rotate --act-clip`, "
                  f"the runs' init settings; a ratio per layer and site from {{1, 0.95, .., 0.7}} "
                  f"on the block's output error): {ih['ppl']:.2f} on the subset"
                  + "".join(f"; {n} ends at {f2(r['evals'][-1][1])} "
                            f"({'below' if r['evals'][-1][1] < ih['ppl'] else 'above'} it)"
                            for n in ("w4a4-rot-aclip", "w4a4-rot-aclip-search")
                            if (r := run(n)) and r["evals"]) + "."]
for name in MAIN:
    if os.path.exists(os.path.join(d, name, "curves.png")):
        lines += ["", f"![{name} curves](data/train/{name}/curves.png)"]

abl = [run(n) for n in ["abl-full", "abl-no-lwc", "abl-no-let", "abl-weights-only", "abl-lwc-let-eps1e-2"]]
abl = [a for a in abl if a]
if abl:
    lines += [
        "",
        "### Ablation (like the paper's Table D.1): W4A4, short runs",
        "",
        "| run | weights | LWC | LET | steps | start (subset) | end (subset) | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in abl:
        c = a["cfg"]
        s, e = a["evals"][0][1], a["evals"][-1][1]
        yes = lambda b: "trained" if b else "frozen"
        lines.append(
            f"| {a['name']} | {yes(c['train_weights'])} | {yes(c['train_clip'])} | "
            f"{yes(c['train_smooth'])} | {c['steps']} | {f2(s)} | {f2(e)} | {100 * (e / s - 1):+.1f}% |")
        cmds.append(a["cmd"])
spread = [r for r in (run(f"spread-{n}") for n in ["w4a4", "w2a16g64", "w4a4-rot"]) if r]
if spread:
    lines += [
        "",
        "### How far does the subset PPL move when nothing is learned?",
        "",
        "From each main run's start (the same init), 3 steps at weight lr 1e-9 with LWC and LET "
        "frozen: each element moves by at most 2e-7 |z| (the gradient clip bounds the step), "
        "far under a W4 rounding step (about 1e-2), so only the few "
        "thousand of the ~10^8 weight codes that sit that close to a rounding threshold flip. "
        "An evaluation after each step. A change of the main run above that is inside this "
        "range is not evidence of learning or of harm.",
        "",
        "| qspec | start (subset) | after steps 1, 2, 3 | range vs start | end vs start of the runs above |",
        "|---|---|---|---|---|",
    ]
    for r in spread:
        spec = r["cfg"]["qspec"]
        rot = bool(r["cfg"].get("rotate"))
        s0 = r["evals"][0][1]
        rest = [p for _, p in r["evals"][1:]]
        lo, hi = min(rest + [s0]), max(rest + [s0])
        # Runs from the same init as the spread run (rotated or not).
        mains = [m for m in (run(n) for n in MAIN) if m and m["evals"] and
                 m["cfg"]["qspec"] == spec and bool(m["cfg"].get("rotate")) == rot and
                 m["evals"][0][1] == s0]
        def change(m):
            e = m["evals"][-1][1]
            where = "inside the range" if lo <= e <= hi else "outside"
            return f"{m['name']} {100 * (e / m['evals'][0][1] - 1):+.1f}% ({where})"
        mc = ", ".join(change(m) for m in mains) or "—"
        lines.append(
            f"| {spec}{' +rot' if rot else ''} | {f2(s0)} | {', '.join(f2(p) for p in rest)} | "
            f"{100 * (lo / s0 - 1):+.1f}% .. {100 * (hi / s0 - 1):+.1f}% | {mc} |")
        cmds.append(r["cmd"])
sens = load(os.path.join(d, "a4-sensitivity.json"))
if sens:
    lines += ["", "One step that changes almost nothing (`bash scripts/a4_sensitivity.sh`): from the "
              "Hadamard-rotated RTN model, one step at weight lr 1e-9 (each element moves by at "
              "most 2e-8 |z|), LWC frozen; the packed files before and after the step compared byte "
              "by byte, both evaluated on the subset:", "",
              "| qspec | bytes changed (of the packed file) | subset PPL before → after | change |",
              "|---|---|---|---|"]
    for r in sens["rows"]:
        p0, p1 = r["ppl"][0], r["ppl"][-1]
        lines.append(f"| {r['qspec']} +rot | {r['changed_bytes']} of {r['bytes']:,} | "
                     f"{f2(p0)} → {f2(p1)} | {100 * (p1 / p0 - 1):+.2f}% |")
    singles = [(r, o) for r in sens["rows"] for o in r.get("single", [])]
    if singles:
        lines += ["", f"Each of the step's first {len(singles) // len(sens['rows'])} changed bytes "
                  "at each qspec applied alone to the model before the step (every other byte as "
                  "it was):", "",
                  "| qspec | tensor (byte offset) | 4-bit codes changed | subset PPL | change |",
                  "|---|---|---|---|---|"]
        for r, o in singles:
            p0 = r["ppl"][0]
            lines.append(f"| {r['qspec']} +rot | `{o['tensor']}` ({o['offset']:,}) | "
                         f"{o['codes_changed']} | {o['ppl']:.4f} | "
                         f"{100 * (o['ppl'] / p0 - 1):+.4f}% |")
    def widest(q):  # the largest |change| of one byte alone at qspec q, in percent
        c = [abs(o["ppl"] / r["ppl"][0] - 1) for r, o in singles if r["qspec"] == q]
        return f"{100 * max(c):.4f}%" if c else "—"
    def raised(q):  # how many of qspec q's single bytes raise the PPL, of how many
        c = [o["ppl"] > r["ppl"][0] for r, o in singles if r["qspec"] == q]
        return f"{sum(c)} of {len(c)}"
    lines += ["", "With 4-bit activations the model's output is far more sensitive to its weight "
              "codes than with 16-bit ones: one byte of the packed codes (one or two of the ~10^8 "
              f"codes moved by a step) moves the subset PPL by up to {widest('W4A4')} at W4A4 "
              f"({raised('W4A4')} raise it), {widest('W4A16')} at W4A16. The likely mechanism: a changed code moves a few "
              "activations across a rounding threshold, each such flip is a whole 4-bit "
              "activation step fed to the next layer, and the flips multiply through the layers. "
              "So at W4A4 any training step, however small, redraws the PPL within the spread "
              "above, and an end-vs-start difference of a few percent says nothing about "
              "learning."]
noise = load(os.path.join(d, "zo-noise.json"))
if noise:
    order = ["W4A4", "W4A16", "W8A8"]
    # One table row per (qspec, rotated, bsz x ctx, group); rows written before the rotated
    # probes existed carry no rotate/bsz/ctx: unrotated, 1 x 256.
    key = lambda r: (r["qspec"], r.get("rotate", False), r.get("bsz", 1), r.get("ctx", 256))
    models = sorted({key(r) for r in noise["rows"]},
                    key=lambda k: (order.index(k[0]) if k[0] in order else 9, k[1], k[2] * k[3]))
    epss = sorted({r["eps"] for r in noise["rows"]}, reverse=True)
    lines += [
        "",
        "### How rough is the quantized loss? (`bash scripts/zo_noise.sh`)",
        "",
        "Mean |l+ - l-| (nats) over 6 steps with every learning rate 0, from the RTN model "
        "(+rot: Hadamard-rotated first), one group perturbed at a time. On a smooth loss it "
        "would shrink in proportion to eps; where it does not, the difference is rounding flips, "
        "not slope.",
        "",
        "| qspec | bsz x ctx | group | " + " | ".join(f"eps {e:g}" for e in epss) + " |",
        "|---|---|---|" + "---|" * len(epss),
    ]
    for k in models:
        for g in ["weights", "clip", "smooth"]:
            vals = {r["eps"]: r["mean_abs_dl"] for r in noise["rows"] if key(r) == k and r["group"] == g}
            if vals:
                lines.append(f"| {k[0]}{' +rot' if k[1] else ''} | {k[2]} x {k[3]} | {g} | " +
                             " | ".join(f"{vals.get(e, float('nan')):.4f}" for e in epss) + " |")
if cmds:
    lines += ["", "Commands:", "", "```"] + cmds + ["```"]
splice("docs/RESULTS.md", "train", "\n".join(lines))

# Step cost and memory.
sc = os.path.join(d, "step-cost")
rows = []
for T in (256, 1024):
    ef, ep, tr = (load(os.path.join(sc, f"{k}_{T}.json")) for k in ("eval_fp", "eval_packed", "train"))
    if not (ef and ep and tr):
        continue
    fwd_p = ep["seconds"] / ep["windows"]
    fwd_f = ef["seconds"] / ef["windows"]
    step = tr["step_seconds"]
    rows.append(
        f"| 1 x {T} | {fwd_p:.3f} | {fwd_f:.3f} | {step:.3f} | **{step / (2 * fwd_p):.2f}** | "
        f"{step / (2 * fwd_f):.2f} | {ef['peak_rss_mib']:.0f} | {ep['peak_rss_mib']:.0f} | "
        f"{tr['peak_rss_mib']:.0f} | **{tr['peak_rss_mib'] / ef['peak_rss_mib']:.2f}** |")
if rows:
    m = load(os.path.join(sc, "machine.json")) or {}
    body = [
        "## ZeroQAT step cost and memory (issue 4)",
        "",
        f"`bash scripts/train_results.sh` (RUNS=step-cost), {m.get('cpu', '?')}, {m.get('threads', '?')} "
        "threads, all in one script run. A forward is `zqat eval-ppl` seconds per window of T "
        "tokens (8 windows) on the packed init model (packed) and on the FP model (fp32); a "
        "step is the mean of 20 `zqat train` W4A4 steps (two forwards in lock step, the "
        "perturbation generated and quantized inside them, the previous update fused in). "
        "Peak RSS: `eval-ppl` on the FP model, on the packed model, and `train` (init included).",
        "",
        "| B x T | fwd packed (s) | fwd fp32 (s) | step (s) | step / 2 fwd packed | step / 2 fwd fp32 | "
        "RSS eval fp (MiB) | RSS eval packed (MiB) | RSS train (MiB) | train / eval fp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ] + rows
    splice("docs/PERF.md", "train-step-cost", "\n".join(body))
print("render_train_results: wrote docs/RESULTS.md and docs/PERF.md sections")
