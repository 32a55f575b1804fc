"""splice(path, tag, body): replace the block between <!-- BEGIN tag --> and <!-- END tag --> of a
Markdown file (appending it when absent), through a temp file renamed into place. Shared by the
render_*.py scripts, so each rewrites only its own sections."""
import os


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
