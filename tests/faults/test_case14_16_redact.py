"""Cases 14-16: redaction by the shape of a value (heapwatch.redact), unit level.

The end-to-end grep of a whole run directory is in test_case14_16_secrets_in_a_run.py.
"""

from __future__ import annotations

import base64
import random
import string
import subprocess
import sys

import pytest

from heapwatch import redact
from heapwatch.agent import naming

H = redact.HIDDEN
RNG = random.Random(20261125)


def rand(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


B62 = string.ascii_letters + string.digits
SHAPED = {
    "payment secret key": "sk_live_" + rand(B62, 24),
    "payment publishable key": "pk_live_" + rand(B62, 24),
    "payment restricted key": "rk_live_" + rand(B62, 24),
    "cloud access key": "AKIA" + rand(string.ascii_uppercase + string.digits, 16),
    "cloud session key": "ASIA" + rand(string.ascii_uppercase + string.digits, 16),
    "code host token": "ghp_" + rand(B62, 36),
    "code host fine-grained token": "github_pat_" + rand(B62 + "_", 50),
    "chat bot token": "xoxb-" + rand(string.digits, 12) + "-" + rand(B62, 24),
    "cloud api key": "AIza" + rand(B62 + "_-", 35),
    "gitlab token": "glpat-" + rand(B62, 20),
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0." + rand(B62, 30),
    "url-safe random": base64.urlsafe_b64encode(RNG.randbytes(24)).decode(),
    "base64 random": base64.b64encode(RNG.randbytes(30)).decode(),
    "hex digest": RNG.randbytes(20).hex(),
    "uuid": "3f1c2b9e-8d4a-4c7b-9e2f-1a2b3c4d5e6f",
    "random alnum": rand(B62, 32),
}


@pytest.mark.parametrize("kind", sorted(SHAPED))
def test_case14_secret_shapes_are_secrets(kind: str) -> None:
    s = SHAPED[kind]
    assert redact.is_secret(s), kind
    assert redact.text(s) == H
    assert s not in redact.text(f"cache[{s}] for worker {s}!")
    assert naming.key_part(s) == H


ORDINARY = [
    "pending_tracker.TRACKER._pending", "ThreadPoolExecutor-0_0", "Thread-12 (serve_forever)",
    "asyncio_0", "MainThread", "uvicorn.protocols.http.h11_impl.H11Protocol",
    "dict@0x7f3a2b1c4d50", "collections.OrderedDict", "HTTPConnectionPool",
    "/usr/lib/python3.11/json/decoder.py:353", "secrets.py:12", "functools._lru_cache_wrapper",
    "<thread worker-3>.run.conn", "_request_handler_registry_cache", "MAX_CONNECTIONS_PER_HOST",
    "sqlalchemy.orm.identity.WeakInstanceDict", "FileNotFoundError", "YCbCrSubSampling",
    "django.db.backends.postgresql.base.DatabaseWrapper", "mysvc.tracker.TRACKER._by_session",
]


@pytest.mark.parametrize("name", ORDINARY)
def test_case14_names_of_code_pass_unchanged(name: str) -> None:
    assert redact.text(name) == name
    assert not redact.is_secret(name)


# What a fresh interpreter imports for this check: the stdlib's big packages and what
# heapwatch itself loads (a fixed set, so the result never depends on which tests ran
# before in the same process).
_MODULES = ("asyncio", "collections", "concurrent.futures", "csv", "dataclasses", "decimal",
            "email.message", "functools", "http.client", "http.server", "json", "logging.handlers",
            "multiprocessing", "pathlib", "sqlite3", "ssl", "tracemalloc", "typing", "unittest",
            "urllib.request", "xml.etree.ElementTree", "zipfile", "heapwatch.agent",
            "heapwatch.analysis", "heapwatch.report", "heapwatch.cli", "click", "psutil")
_SCAN = """
import importlib, sys
from heapwatch import redact
for m in sys.argv[1:]:
    importlib.import_module(m)
flagged = []
for modname, mod in list(sys.modules.items()):
    try:
        items = list(vars(mod).items())
    except TypeError:
        continue
    for attr, value in items:
        for name in (attr, f"{modname}.{getattr(value, '__qualname__', attr)}"):
            if isinstance(name, str) and redact.is_secret(name):
                flagged.append(name)
print(len(sys.modules), sorted(set(flagged)))
"""


def test_case14_no_name_of_the_stdlib_looks_secret() -> None:
    """Every qualified name of every class and function a fresh interpreter has loaded after
    importing the stdlib's big packages and heapwatch's own dependencies."""
    proc = subprocess.run([sys.executable, "-c", _SCAN, *_MODULES], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded, flagged = proc.stdout.split(" ", 1)
    assert int(loaded) > 300
    assert flagged.strip() == "[]"


def test_case14_random_tokens_of_20_chars_and_more_are_caught() -> None:
    made = [rand(B62, n) for n in (20, 24, 32, 40) for _ in range(100)]
    made += [base64.urlsafe_b64encode(RNG.randbytes(n)).decode().rstrip("=")
             for n in (18, 24, 32) for _ in range(100)]
    missed = [t for t in made if not redact.is_secret(t)]
    assert len(missed) <= len(made) // 100, missed  # under 1%: by shape, not a list


@pytest.mark.parametrize(("key", "shown"), [
    ("users", True), ("tick", True), ("by_session", True), ("password", False),
    ("api_key", False), ("session_id", False), ("authToken", False), ("AKIAABCDEFGHIJKLMNOP", False),
    ("x" * 40, False), ("has space", False), (42, False),
])
def test_case14_dict_keys(key: object, shown: bool) -> None:
    assert (naming.key_part(key) != H) is shown


def test_case14_opt_in_shows_names() -> None:
    key = SHAPED["payment secret key"]
    try:
        naming.set_show_names(True)
        assert naming.key_part(key) == f"[{key!r}]"
        assert naming.clean("worker-" + key) == "worker-" + key
    finally:
        naming.set_show_names(False)
    assert naming.key_part(key) == H


def test_case15_attribute_thread_and_type_names() -> None:
    tok = SHAPED["code host token"]
    assert naming.name_part(tok) == H
    assert naming.name_part("worker-" + tok) == "worker-" + H
    assert naming.name_part("_pending") == "_pending"
    klass = type("Session_" + SHAPED["hex digest"], (), {})
    assert naming.type_name(klass, "app") == f"{__name__}.Session_{H}"
    assert naming.type_name(dict, "app") == "dict"


@pytest.mark.parametrize(("args", "want"), [
    (["python", "app.py", "--password=Tr0ub4dor&3"], ["python", "app.py", f"--password={H}"]),
    (["python", "app.py", "--password", "Tr0ub4dor&3"], ["python", "app.py", "--password", H]),
    (["mysql", "-u", "root", "-p", "hunter2"], ["mysql", "-u", "root", "-p", H]),
    (["mysql", "-phunter2"], ["mysql", f"-p{H}"]),
    (["svc", "--api-key", "abc"], ["svc", "--api-key", H]),
    (["svc", "--apikey=abc", "--db-pass", "x"], ["svc", f"--apikey={H}", "--db-pass", H]),
    (["svc", "--client-secret", "x", "--token=t"], ["svc", "--client-secret", H, f"--token={H}"]),
    (["svc", "--dsn", "postgres://admin:S3cret@db/app"], ["svc", "--dsn", H]),
    (["svc", "postgres://admin:S3cret@db/app"], ["svc", f"postgres://{H}@db/app"]),
    (["env", "DB_PASSWORD=x", "APP_TOKEN=y", "PORT=80"],
     ["env", f"DB_PASSWORD={H}", f"APP_TOKEN={H}", "PORT=80"]),
    (["curl", "-H", "Authorization: Bearer abcdef123456"], ["curl", "-H", f"Authorization: {H}"]),
    (["python", "-m", "uvicorn", "app:app", "--port", "8000", "--workers", "2"],
     ["python", "-m", "uvicorn", "app:app", "--port", "8000", "--workers", "2"]),
    (["python", "-c", "print(1)"], ["python", "-c", "print(1)"]),
])
def test_case16_command_lines(args: list[str], want: list[str]) -> None:
    assert redact.argv(args) == want


def test_case16_text_shapes() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    assert redact.text(f"key: {pem} end") == f"key: {H} end"
    assert redact.text("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: {H}"
    assert redact.text("retry with Bearer abc.def-ghi_jkl") == f"retry with Bearer {H}"
    assert redact.text('{"password": "x", "user": "bob"}') == f'{{"password": {H}, "user": "bob"}}'
    assert redact.text("https://ghp_abc@github.com/x") == f"https://{H}@github.com/x"
