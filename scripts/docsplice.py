"""What the render_*.py scripts share.
splice(path, tag, body): replace the block between <!-- BEGIN tag --> and <!-- END tag --> of a
Markdown file (appending it when absent), through a temp file renamed into place, so each script
rewrites only its own sections.
load_result(out_dir, name): the result a *_results.sh script kept as out_dir/NAME.json (its last
line: the command's JSON) with its command line from NAME.cmd under "_cmd"; None when absent."""
import json
import os


def load_result(out_dir, name):
    path = os.path.join(out_dir, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        j = json.loads(f.read().strip().splitlines()[-1])
    with open(os.path.join(out_dir, name + ".cmd")) as f:
        j["_cmd"] = f.read().strip()
    return j


def splice(path, tag, body):
    begin, end = f"<!-- BEGIN {tag} -->", f"<!-- END {tag} -->"
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    if begin in text:
        a = text.index(begin)
        b = text.index(end) + len(end) + 1
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip() + "\n\n" + block
    tmp = path + ".tmp"
    open(tmp, "w").write(text)
    os.replace(tmp, path)
