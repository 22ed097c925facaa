"""The README's two set-up commands stay true: CI runs the second one verbatim."""
import re

from tests.support.paths import ROOT


def readme_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", quick, re.S)


def test_exactly_two_setup_commands_and_ci_runs_the_second():
    cmds = readme_commands()
    assert len(cmds) == 2
    run_cmd, test_cmd = cmds
    assert "pip install -e ." in run_cmd and "uar-stream run --source" in run_cmd
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci_lines == [test_cmd]


def test_readme_example_source_exists():
    run_cmd = readme_commands()[0]
    src = re.search(r"--source (\S+)", run_cmd).group(1)
    assert (ROOT / src).exists()
