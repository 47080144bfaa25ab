"""The runtime images' layering: torch in a layer that does not depend on the target, so the trainer and
server images share it, and above it only what the target adds (images/layer-delta.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from tests.packaging.chart import ROOT

DOCKERFILE = (ROOT / "images" / "Dockerfile.runtime").read_text()


def stages(dockerfile: str) -> dict[str, list[str]]:
    """Instructions (continuation lines joined) of each stage, by name ("" for the unnamed last one)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM \S+(?: AS (\S+))?$", line)
        if match:
            current = match.group(1) or ""
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def test_the_torch_layer_is_the_same_for_every_target() -> None:
    by_stage = stages(DOCKERFILE)
    (torch_stage,) = [name for name, lines in by_stage.items() if any("torch==" in line for line in lines)]
    assert not any("TARGET" in line for line in by_stage[torch_stage]), "torch would differ per target"
    assert any("TORCH_INDEX" in line for line in by_stage[torch_stage])
    final = by_stage[""]
    copies = [line for line in final if line.startswith("COPY")]
    assert copies[0] == f"COPY --from={torch_stage} /opt/crucible /opt/crucible"
    assert copies[1].startswith("COPY --from=build /opt/target/ /opt/crucible/")
    # Everything before the torch layer in the final image is the base: nothing per target or variant.
    assert final.index(copies[0]) == 0


def test_build_sh_passes_a_torch_index_per_variant() -> None:
    script = (ROOT / "images" / "build.sh").read_text()
    assert '"TORCH_INDEX=${TORCH_CPU_INDEX:-}"' in script and '"TORCH_INDEX=${TORCH_CUDA_INDEX:-}"' in script


def test_layer_delta_copies_only_what_changed_after_the_stamp(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "lib" / "torch").mkdir(parents=True)
    (venv / "lib" / "torch" / "core.py").write_text("torch")
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    stamp = tmp_path / "stamp"
    time.sleep(0.01)
    stamp.touch()
    time.sleep(0.01)
    (venv / "lib" / "fastapi").mkdir()
    (venv / "lib" / "fastapi" / "app.py").write_text("fastapi")
    (venv / "bin" / "crucible").write_text("#!/bin/sh\n")
    (venv / "bin" / "crucible").chmod(0o755)
    (venv / "bin" / "python3").symlink_to("python")
    delta = tmp_path / "delta"
    subprocess.run([str(ROOT / "images" / "layer-delta.sh"), str(venv), str(stamp), str(delta)], check=True)
    files = sorted(str(path.relative_to(delta)) for path in delta.rglob("*") if not path.is_dir())
    assert files == ["bin/crucible", "bin/python3", "lib/fastapi/app.py"]
    assert os.access(delta / "bin" / "crucible", os.X_OK)
    assert os.readlink(delta / "bin" / "python3") == "python"
