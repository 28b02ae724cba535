"""Stand-ins for systemctl and launchctl that record their arguments and answer from a table.

See the `stub_tools` fixture in tests/app/service/conftest.py for the API.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_STUB = """#!{python}
import json, os, sys
tool = os.path.basename(sys.argv[0])
with open({log!r}, "a") as log:
    log.write(json.dumps([tool, *sys.argv[1:]]) + "\\n")
verb = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
with open({answers!r}) as f:
    answer = json.load(f).get(tool + " " + verb, {{}})
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("status", 0))
"""


class StubTools:
    def __init__(self, directory: Path) -> None:
        self.bin = directory / "bin"
        self.bin.mkdir(parents=True)
        self._log = directory / "calls.jsonl"
        self._log.touch()
        self._answers = directory / "answers.json"
        self._answers.write_text("{}")
        for tool in ("systemctl", "launchctl"):
            path = self.bin / tool
            path.write_text(
                _STUB.format(python=sys.executable, log=str(self._log), answers=str(self._answers))
            )
            path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self._log.read_text().splitlines()]

    def answer(
        self, tool: str, verb: str, stdout: str = "", stderr: str = "", status: int = 0
    ) -> None:
        answers = json.loads(self._answers.read_text())
        answers[f"{tool} {verb}"] = {"stdout": stdout, "stderr": stderr, "status": status}
        self._answers.write_text(json.dumps(answers))
