"""The test suite's SoundCloud: TestSandbox, the product's sandbox with fault injection, a request
log, accessors and an admin API (harness.py, faults.py). Tests import it as `sandbox_tools`
(tests/conftest.py puts tests/ on sys.path)."""

from .faults import Faults, ScriptedFault
from .harness import (
    RateLimitEvent,
    RecordedFile,
    RecordedRequest,
    StoredUpload,
    TestSandbox,
    TokenPair,
    pkce_pair,
    serve_forever,
)

__all__ = [
    "Faults",
    "RateLimitEvent",
    "RecordedFile",
    "RecordedRequest",
    "ScriptedFault",
    "StoredUpload",
    "TestSandbox",
    "TokenPair",
    "pkce_pair",
    "serve_forever",
]
