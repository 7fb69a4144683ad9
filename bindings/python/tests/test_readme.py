"""The README's example runs as written (with the model path filled in)."""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))


def test_readme_example(stories_path, capsys):
    with open(os.path.join(HERE, "..", "README.md")) as f:
        text = f.read()
    m = re.search(r"## Example\s+```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its example"
    code = m.group(1)
    assert len(code.strip().splitlines()) <= 5
    exec(compile(code.replace('"stories260K.gguf"', repr(stories_path)), "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith(", there was a little girl named Lily.")
