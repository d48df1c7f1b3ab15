"""Run Python code in a subprocess where medic_hf cannot be imported, as on a machine without the package.

The test environment has medic_hf installed in editable mode: a `.pth` file in site-packages installs an
import finder that maps `medic_hf` to the repository. Building a second virtual environment would need a
second copy of torch (gigabytes), so the subprocess instead starts with `python -I -S`:

- `-I` leaves out the current folder, the script's folder, `PYTHONPATH` and the user site-packages;
- `-S` skips the `site` module, so no `.pth` file runs and the editable finder is never installed.

The code then appends the interpreter's site-packages folders to `sys.path` (packages such as torch and
transformers stay importable) and adds a meta-path finder that raises `ModuleNotFoundError` for `medic_hf`,
in case some other path leads to the repository. The code under test runs after that prelude, and the prelude
checks that `import medic_hf` fails before handing over.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


PRELUDE = """\
import sys

sys.path.extend({site_packages!r})


class HideMedicHf:
    def find_spec(self, name, path=None, target=None):
        if name == "medic_hf" or name.startswith("medic_hf."):
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: the package is not installed here)")
        return None


sys.meta_path.insert(0, HideMedicHf())
try:
    import medic_hf
except ModuleNotFoundError:
    pass
else:
    raise SystemExit(f"medic_hf is importable from {{medic_hf.__file__}}, so the test would prove nothing")
"""


def site_packages() -> list[str]:
    """Return the site-packages folders of the running interpreter (the virtual environment's)."""
    folders = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(folder for folder in folders if Path(folder).is_dir())


def run_without_medic_hf(code: str, *args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `code` with `args` in `sys.argv[1:]`, offline, in `cwd`, where `import medic_hf` fails.

    Dynamic modules (the model code copied by `trust_remote_code=True`) go to `cwd/hf_modules`.

    Raises:
        AssertionError: if the process fails, with the end of its output.
    """
    script = PRELUDE.format(site_packages=site_packages()) + "\n" + code
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(cwd)),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(cwd / "hf_home"),
        "HF_MODULES_CACHE": str(cwd / "hf_modules"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"isolated run failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result
