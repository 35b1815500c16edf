"""METEOR through the jar that pycocoevalcap ships (optional: needs ``java`` and pycocoevalcap installed).

METEOR 1.5 (Denkowski and Lavie, 2014, https://aclanthology.org/W14-3348/) aligns candidate and references
with exact, stem, synonym and paraphrase matches; it is a Java program with large paraphrase tables, so
xmodal does not re-implement it. :func:`meteor_score` speaks the same ``-stdio`` protocol as pycocoevalcap's
``meteor/meteor.py`` (one ``SCORE`` line per image, then one ``EVAL`` line) to
``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``, so its numbers are pycocoevalcap's.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from xmodal.errors import DataError


def meteor_jar() -> Path | None:
    """``pycocoevalcap/meteor/meteor-1.5.jar`` of the installed pycocoevalcap, if any."""
    spec = importlib.util.find_spec("pycocoevalcap")
    for root in (spec.submodule_search_locations or []) if spec else []:
        jar = Path(root) / "meteor" / "meteor-1.5.jar"
        if jar.is_file():
            return jar
    return None


def meteor_availability() -> tuple[bool, str]:
    """Whether METEOR can run here, and if not, why (one line)."""
    if shutil.which("java") is None:
        return False, "METEOR not computed: no java on PATH (it runs pycocoevalcap's meteor-1.5.jar)"
    if meteor_jar() is None:
        return False, "METEOR not computed: pycocoevalcap (which ships meteor-1.5.jar) is not installed"
    return True, "METEOR computed with pycocoevalcap's meteor-1.5.jar"


def meteor_score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR of tokenised captions, as pycocoevalcap's ``Meteor().compute_score``.

    Args:
        references: for each of N images its tokenised references; hypotheses: the N tokenised candidates.

    Returns:
        ``(corpus score, [score per image])``.

    Raises:
        DataError: METEOR is not available or the jar failed.
    """
    available, why = meteor_availability()
    jar = meteor_jar()
    if not available or jar is None:
        raise DataError(why)
    cmd = ["java", "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"]
    proc = subprocess.Popen(
        cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        stats = []
        for refs, hyp in zip(references, hypotheses, strict=True):
            hyp = hyp.replace("|||", "").replace("  ", " ")
            proc.stdin.write(("SCORE ||| " + " ||| ".join(refs) + " ||| " + hyp + "\n").encode())
            proc.stdin.flush()
            stats.append(proc.stdout.readline().decode().strip())
        proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        proc.stdin.flush()
        per_image = [float(proc.stdout.readline().strip()) for _ in stats]
        score = float(proc.stdout.readline().strip())
    except (ValueError, BrokenPipeError) as e:
        raise DataError(f"METEOR ({jar}) failed: {e}") from None
    finally:
        proc.kill()
        proc.wait()
    return score, per_image
