"""Shared fixtures. The library comes from KV_LIBRARY (set by scripts/test.sh) or the usual
lookup; the test models from KV_SHARED_DIR, else <repo>/../shared. Tests that need a model skip
with the reason when it is absent; the library missing while KV_LIBRARY is set is a failure."""
import gc
import json
import os
import threading

import pytest

import kvulkan as kv

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
SHARED = os.environ.get("KV_SHARED_DIR") or os.path.normpath(os.path.join(REPO, "..", "shared"))

STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
STORIES_REF = os.path.join(SHARED, "reference", "stories260K.once-upon-a-time.json")
LLAMA_GQA = os.path.join(SHARED, "models", "fixtures", "llama-gqa.f32.gguf")
LLAMA_GQA_LONG_REF = os.path.join(SHARED, "reference", "llama-gqa.f32.long.json")


def _need(path):
    if not os.path.exists(path):
        pytest.skip(f"test data not found: {path} (set KV_SHARED_DIR to the shared/ directory)")
    return path


@pytest.fixture(scope="session")
def lib():
    try:
        return kv.load_library()
    except kv.LibraryNotFoundError as e:
        if os.environ.get("KV_LIBRARY"):
            raise
        pytest.skip(f"libkvulkan not found ({e}); build it and set KV_LIBRARY")


class LogCollector:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    def __call__(self, level, message):
        with self.lock:
            self.messages.append((level, message))

    def of_level(self, level):
        with self.lock:
            return [m for lv, m in self.messages if lv == level]


@pytest.fixture(scope="session")
def runtime_logs():
    return LogCollector()


@pytest.fixture(scope="session")
def runtime(lib, runtime_logs):
    """One runtime for the whole run, validation layer on (the layer is installed wherever the
    C tests run; KV_VALIDATION=1 in scripts/test.sh asks for it too). At the end: no
    validation-layer message may have arrived."""
    try:
        rt = kv.Runtime(validation=True, log_callback=runtime_logs)
        validated = True
    except kv.UnsupportedError:
        rt = kv.Runtime(log_callback=runtime_logs)
        validated = False
    yield rt
    gc.collect()
    count = rt.validation_message_count()
    msgs = runtime_logs.of_level(kv.LogLevel.VALIDATION)
    rt.close()
    assert count == 0 and not msgs, f"validation messages ({count}): {msgs[:5]}"
    if validated:
        assert not rt._handle, "the shared runtime outlived its last model/session"


@pytest.fixture(scope="session")
def stories_path():
    return _need(STORIES)


@pytest.fixture(scope="session")
def stories_ref():
    with open(_need(STORIES_REF)) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def stories(runtime, stories_path):
    m = kv.Model(stories_path, runtime)
    yield m
    m.close()


@pytest.fixture(scope="session")
def llama_gqa_path():
    return _need(LLAMA_GQA)


@pytest.fixture(scope="session")
def gqa_long_prompt():
    """The 100 prompt token ids of llama-gqa.f32's long reference run."""
    with open(_need(LLAMA_GQA_LONG_REF)) as f:
        ids = json.load(f)["prompt_ids"]
    assert len(ids) == 100
    return ids
