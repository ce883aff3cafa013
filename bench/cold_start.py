"""Lambda cold-start proxy: the layer's unzipped size and each handler's import time in a fresh interpreter.

The layer is built the way ``sam build`` builds it (``layers/pg2rds/Makefile``: the requirements and the
``pg2rds`` package under ``python/``, plus the bytecode of exactly what the handlers import, since ``/opt``
is read-only in Lambda and a layer without ``.pyc`` is compiled again at every cold start). boto3,
botocore and s3transfer are not in the layer (the Lambda Python runtime provides them); they sit in a
separate "runtime" directory for the import measurement, since they still cost import time, as in Lambda.
The size is also measured for the Lambda platform's wheels (CPython 3.12, manylinux x86_64, no bytecode).

Each handler (``functions/*/app.py``) is imported by a fresh ``python -S`` (no site-packages: only the
function directory, the layer and the runtime directory on ``sys.path``), with Lambda's environment
variables and ``PYTHONDONTWRITEBYTECODE``. Import time is measured inside the interpreter around
``import app``, median of 5, twice: with the layer as built, and with everything precompiled
(``compileall``). ``-X importtime`` then names the most expensive imports.

Targets: layer ≤ 30 MB unzipped; each handler's import ≤ 300 ms.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import table, verdict

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "pg2rds" / "requirements.txt"
PACKAGE = ROOT / "layers" / "pg2rds" / "pg2rds"
FUNCTIONS = sorted(p.parent for p in (ROOT / "functions").glob("*/app.py"))
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
TARGET_MB = 30
TARGET_MS = 300
REPEATS = 5
IMPORT = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed: {result.stderr[-2000:]}")


def size_mb(path: Path, skip_pycache: bool = False) -> float:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        if skip_pycache and "__pycache__" in dirnames:
            dirnames.remove("__pycache__")
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return total / 1e6


def provided_entries(directory: Path) -> list[Path]:
    """The runtime-provided packages' directories and dist-info in ``directory``."""
    entries = []
    for entry in directory.iterdir():
        name = entry.name.lower().split("-")[0]
        if name in RUNTIME_PROVIDED:
            entries.append(entry)
    return entries


def build_layer(work: Path, extra: tuple[str, ...] = ()) -> Path:
    """The layer as ``sam build`` makes it (layers/pg2rds/Makefile: dependencies plus the bytecode of what
    the handlers import); with ``extra`` pip options (another platform), dependencies only, no bytecode."""
    layer = work / "python"
    if extra:
        pip("--no-compile", "--target", str(layer), "-r", str(REQUIREMENTS), *extra)
        shutil.copytree(PACKAGE, layer / "pg2rds", ignore=shutil.ignore_patterns("__pycache__"))
        return layer
    subprocess.run(
        ["make", "--quiet", "-C", str(PACKAGE.parent), "build-SharedLayer", f"ARTIFACTS_DIR={work}",
         f"PYTHON={sys.executable}", f"LAYER_PYTHON={sys.version_info.major}.{sys.version_info.minor}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return layer


def largest(layer: Path, count: int = 6) -> list[tuple[str, float]]:
    sizes = {}
    for entry in layer.iterdir():
        if entry.is_dir() and not entry.name.endswith(("dist-info", "__pycache__")):
            sizes[entry.name] = size_mb(entry)
        elif entry.is_file():
            sizes[entry.name] = entry.stat().st_size / 1e6
    return sorted(sizes.items(), key=lambda item: -item[1])[:count]


def lambda_env(function_dir: Path, path: list[Path]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(function_dir),
        "AWS_LAMBDA_FUNCTION_NAME": f"pg2rds-{function_dir.name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "pg2rds",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "DMS_SECRETS_ACCESS_ROLE_ARN": "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access",
    }


def import_seconds(function_dir: Path, layer: Path, runtime: Path) -> list[float]:
    env = lambda_env(function_dir, [function_dir, layer, runtime])
    samples = []
    for _ in range(REPEATS):
        out = subprocess.run(
            [sys.executable, "-S", "-c", IMPORT], env=env, cwd=function_dir, capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"import of {function_dir.name}/app.py failed: {out.stderr[-2000:]}")
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


def importtime(function_dir: Path, layer: Path, runtime: Path) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) from ``-X importtime``."""
    env = lambda_env(function_dir, [function_dir, layer, runtime])
    out = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", "import app"],
        env=env, cwd=function_dir, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        rows.append((name.rstrip(), int(self_us), int(cumulative_us)))
    return rows


def remove_provided(layer: Path) -> float:
    """Take the runtime-provided packages out of the layer; returns the size before (MB)."""
    before = size_mb(layer)
    for entry in provided_entries(layer):
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return before


def import_table(layer: Path, runtime: Path, label: str) -> dict[Path, float]:
    rows, medians = [], {}
    for function_dir in FUNCTIONS:
        samples = import_seconds(function_dir, layer, runtime)
        medians[function_dir] = statistics.median(samples)
        rows.append(
            [function_dir.name, f"{medians[function_dir] * 1000:.0f} ms",
             " ".join(f"{s * 1000:.0f}" for s in samples), verdict(medians[function_dir] * 1000 <= TARGET_MS)]
        )  # fmt: skip
    print()
    title = f"Handler import time, {label} (fresh `python -S` per run, median of {REPEATS})"
    print(table(["handler", "median import", "samples (ms)", f"≤ {TARGET_MS} ms"], rows, title=title))
    return medians


def explain(function_dir: Path, layer: Path, runtime: Path) -> None:
    rows_it = importtime(function_dir, layer, runtime)
    total = max((c for _, _, c in rows_it), default=0)
    print()
    print(f"-X importtime, {function_dir.name}/app.py, layer as shipped (one run; importtime adds overhead): "
          f"import app {total / 1000:.0f} ms cumulative")  # fmt: skip
    # packages imported directly by the handler's import chain, by cumulative time: depth ≤ 3 levels
    packages: dict[str, int] = {}
    for name, _self_us, cumulative in rows_it:
        stripped = name.strip()
        root = stripped.split(".")[0]
        if root in ("app",):
            continue
        if "." not in stripped:
            packages[root] = max(packages.get(root, 0), cumulative)
    top = sorted(packages.items(), key=lambda item: -item[1])[:10]
    print("(cumulative figures overlap: a package imported by another counts in both)")
    print(table(["package (first import, cumulative)", "ms"], [[n, f"{us / 1000:.1f}"] for n, us in top]))
    by_self = sorted(rows_it, key=lambda r: -r[1])[:8]
    print()
    print(table(["module (by own time)", "self ms", "cumulative ms"],
                [[n.strip(), f"{s / 1000:.1f}", f"{c / 1000:.1f}"] for n, s, c in by_self]))  # fmt: skip


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pg2rds-bench-layer-"))
    try:
        runtime = work / "runtime" / "python"
        pip("--target", str(runtime), "boto3")  # what the Lambda runtime provides (with its .pyc)

        lambda_sizes = None
        try:
            lambda_layer = build_layer(
                work / "lambda",
                ("--platform", "manylinux2014_x86_64", "--python-version", "3.12", "--implementation", "cp",
                 "--only-binary=:all:"),
            )  # fmt: skip
            lambda_sizes = (remove_provided(lambda_layer), size_mb(lambda_layer), largest(lambda_layer))
        except RuntimeError as error:
            print(f"could not build the layer for CPython 3.12 manylinux: {error}")
        local_layer = build_layer(work / "local")
        local_sizes = (remove_provided(local_layer), size_mb(local_layer))

        size_rows = []
        if lambda_sizes:
            size_rows.append(["Lambda platform wheels (CPython 3.12, manylinux x86_64), no .pyc",
                              f"{lambda_sizes[0]:.1f} MB", f"{lambda_sizes[1]:.1f} MB"])  # fmt: skip
        size_rows.append([f"as `sam build` makes it here (CPython {sys.version_info.major}."
                          f"{sys.version_info.minor}, with the handlers' .pyc)",
                          f"{local_sizes[0]:.1f} MB", f"{local_sizes[1]:.1f} MB"])  # fmt: skip
        headers = ["layer python/", "everything installed", "without boto3/botocore/s3transfer"]
        print(table(headers, size_rows, title="Layer size, unzipped"))
        if lambda_sizes:
            print("largest entries: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in lambda_sizes[2]))
        shipped = max(local_sizes[1], lambda_sizes[1] if lambda_sizes else 0.0)
        print(f"layer size {shipped:.1f} MB, the larger of the two (target ≤ {TARGET_MB} MB: "
              f"{verdict(shipped <= TARGET_MB)})")  # fmt: skip

        shipped_medians = import_table(local_layer, runtime, "layer as `sam build` makes it")
        slowest = max(shipped_medians, key=lambda handler: shipped_medians[handler])
        explain(slowest, local_layer, runtime)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(local_layer)], check=True)
        compiled_medians = import_table(local_layer, runtime, "layer precompiled (.pyc present)")
        print()
        for label, medians in (("as built", shipped_medians), ("everything precompiled", compiled_medians)):
            worst = max(medians.values()) * 1000
            print(f"slowest handler import, {label}: {worst:.0f} ms (target ≤ {TARGET_MS} ms: "
                  f"{verdict(worst <= TARGET_MS)})")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
