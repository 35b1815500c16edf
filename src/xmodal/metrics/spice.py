"""SPICE through the jar that pycocoevalcap ships, where its requirements are met.

SPICE (Anderson et al. 2016, https://arxiv.org/abs/1607.08822) parses candidate and references into scene
graphs with Stanford CoreNLP and scores the F1 of their tuples. pycocoevalcap ships ``spice-1.0.jar`` but not
CoreNLP: on first use it downloads ``stanford-corenlp-3.6.0.jar`` and ``stanford-corenlp-3.6.0-models.jar``
from nlp.stanford.edu into ``pycocoevalcap/spice/lib``. xmodal never downloads: SPICE runs when ``java`` is on
PATH and those two jars are already in that folder (copy them there by hand), and otherwise
:func:`spice_availability` says exactly what is missing. :func:`spice_score` runs the jar as pycocoevalcap's
``Spice.compute_score`` does (same input JSON, ``-subset -silent``, the mean of the per-image ``All``
F-scores), with its temporary and cache files in a folder of xmodal's, not inside site-packages.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xmodal.errors import DataError
from xmodal.paths import cache_dir

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
"""What ``spice-1.0.jar``'s class path expects in its ``lib/`` folder besides the jars pycocoevalcap ships."""


def spice_dir() -> Path | None:
    """``pycocoevalcap/spice`` of the installed pycocoevalcap when it holds ``spice-1.0.jar``."""
    spec = importlib.util.find_spec("pycocoevalcap")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "spice"
        if (folder / "spice-1.0.jar").is_file():
            return folder
    return None


def spice_availability() -> tuple[bool, str]:
    """Whether SPICE can run here, and if not, why (one line naming what is missing and where)."""
    if shutil.which("java") is None:
        return False, "SPICE not computed: no java on PATH (it runs pycocoevalcap's spice-1.0.jar)"
    folder = spice_dir()
    if folder is None:
        return False, "SPICE not computed: pycocoevalcap (which ships spice-1.0.jar) is not installed"
    missing = [j for j in CORENLP_JARS if not (folder / "lib" / j).is_file()]
    if missing:
        return False, (
            f"SPICE not computed: {' and '.join(missing)} missing from {folder / 'lib'} (Stanford CoreNLP "
            "3.6.0, which pycocoevalcap downloads from nlp.stanford.edu and xmodal does not); copy them "
            "the missing jars there to enable SPICE"
        )
    return True, "SPICE computed with pycocoevalcap's spice-1.0.jar"


def spice_score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[float, list[float]]:
    """Corpus and per-image SPICE of tokenised captions, as pycocoevalcap's ``Spice().compute_score``.

    Args:
        references: for each of N images its tokenised references; hypotheses: the N tokenised candidates.

    Returns:
        ``(mean over images of the "All" F-score, [that F-score per image])``.

    Raises:
        DataError: SPICE is not available, the jar failed, its output is not what SPICE writes, or an image
            got no score (NaN, where pycocoevalcap's corpus mean would silently become NaN).
    """
    available, why = spice_availability()
    folder = spice_dir()
    if not available or folder is None:
        raise DataError(why)
    rows = [
        {"image_id": i, "test": hyp, "refs": list(refs)}
        for i, (refs, hyp) in enumerate(zip(references, hypotheses, strict=True))
    ]
    work = cache_dir() / "spice"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_file.write_text(json.dumps(rows))
        cmd = ["java", "-jar", "-Xmx8G", "spice-1.0.jar", str(in_file)]
        cmd += ["-cache", str(work / "cache"), "-out", str(out_file), "-subset", "-silent"]
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.split()[-30:])
            jar = folder / "spice-1.0.jar"
            raise DataError(f"SPICE ({jar}) failed with exit code {proc.returncode}: {tail}")
        try:
            results = json.loads(out_file.read_text())
            by_id = {int(r["image_id"]): float(r["scores"]["All"]["f"]) for r in results}
            per_image = [by_id[i] for i in range(len(rows))]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"SPICE wrote an unexpected {out_file.name}: {e!r}") from None
    if any(math.isnan(v) for v in per_image):
        raise DataError("SPICE gave no score (NaN) for some images; pycocoevalcap's mean would be NaN")
    return sum(per_image) / len(per_image), per_image
