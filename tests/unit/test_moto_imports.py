"""moto's Step Functions interpreter is imported without moto's EC2 (1 s of every local run's start), and
moto's Batch still works whole for whoever uses it. Each check runs in a fresh interpreter: what is
imported is the point."""

import subprocess
import sys


def run_fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_embedded_account_imports_no_ec2() -> None:
    out = run_fresh(
        "import sys, pg2rds_emulator.embedded, pg2rds_emulator.local_run\n"
        "from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser\n"
        "print(sorted(name for name in sys.modules if name.startswith(('moto.ec2', 'moto.batch'))))"
    )
    assert out == "['moto.batch', 'moto.batch.exceptions', 'moto.batch.utils']"


def test_batch_is_whole_once_used() -> None:
    out = run_fresh(
        "import sys, pg2rds_emulator.embedded\n"
        "import moto.batch\n"
        "from moto.batch import batch_backends\n"
        "from moto.batch.utils import JobStatus\n"
        "print(type(sys.modules['moto.batch']).__name__, 'moto.ec2.models' in sys.modules, "
        "batch_backends is moto.batch.models.batch_backends, JobStatus.SUCCEEDED.name)"
    )
    assert out == "module True True SUCCEEDED"


def test_the_cli_imports_no_moto() -> None:
    """Registering the local commands stays light: ``pg2rds status`` does not import moto."""
    out = run_fresh(
        "import sys, pg2rds_cli.main\npg2rds_cli.main.build_parser()\nprint('moto' in sys.modules)"
    )
    assert out == "False"


def test_a_command_freezes_its_imports_only_in_its_own_process() -> None:
    """``imports_done`` freezes what the imports created only in the ``pg2rds`` command's own process; a
    test process calling ``main()`` keeps every object collectable."""
    out = run_fresh(
        "import gc, pg2rds_cli.main as m\n"
        "m.imports_done(); print(gc.get_freeze_count() == 0)\n"
        "m._COMMAND_PROCESS = True; m.imports_done(); print(gc.get_freeze_count() > 10000)"
    )
    assert out.split() == ["True", "True"]


def test_the_command_loads_with_the_collector_paused_and_runs_with_it_on() -> None:
    """The ``pg2rds`` entry point loads boto3 (and the rest of the CLI) with the collector paused, and the
    command itself runs with it on again: a long ``watch`` must keep collecting."""
    out = run_fresh(
        "import gc, sys\n"
        "seen = []\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'boto3': seen.append(gc.isenabled())\n"
        "sys.meta_path.insert(0, Watch())\n"
        "import pg2rds_cli.command as command\n"
        "sys.argv = ['pg2rds', '--help']\n"
        "try:\n"
        "    command.run()\n"
        "except SystemExit:\n"
        "    print(seen, gc.isenabled())\n"
    )
    assert out.splitlines()[-1] == "[False] True"  # after the help text


def test_a_paused_collector_is_left_as_it_was() -> None:
    out = run_fresh(
        "import gc\n"
        "from pg2rds_cli.collector import paused\n"
        "with paused(): inside = gc.isenabled()\n"
        "after = gc.isenabled(); gc.disable()\n"
        "with paused(): pass\n"
        "print(inside, after, gc.isenabled())"
    )
    assert out == "False True False"
