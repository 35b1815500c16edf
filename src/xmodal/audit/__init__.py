"""Data audits: train/eval contamination (exact, perceptual-hash, embedding and caption duplicates).

::

    from xmodal.audit import audit, open_source
    result = audit(open_source("emoji:train"), open_source("fashion-mnist:test"))
"""

from xmodal.audit.contamination import AuditResult, AuditSettings, Pair, audit, write_audit
from xmodal.audit.sources import AuditItem, Source, open_source

__all__ = [
    "AuditItem",
    "AuditResult",
    "AuditSettings",
    "Pair",
    "Source",
    "audit",
    "open_source",
    "write_audit",
]
