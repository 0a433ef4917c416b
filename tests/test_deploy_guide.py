"""What docs/deploy.md promises an operator, on real parts: ``touchpoint setup`` against a dev
server started without Touchpoint's search attributes, ``touchpoint migrate``, the worker's
``/healthz`` and ``/readyz`` from a real worker process, Temporal over TLS through a real
TLS-terminating proxy (CA file and server name), and the systemd units checked by
``systemd-analyze verify``."""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from config.errors import ConfigurationError
from config.project import ProjectConfig
from config.settings import connect, load_settings
from ops.dev import dev_server_command, wait_for_port
from tests.conftest import ROOT
from tests.faults.stack import make_project
from tests.net import free_port
from tests.test_operator_errors import NOTE, assert_one_line, environment, run_all
from workflows.search import ALL

pytestmark = pytest.mark.timeout(600)  # real servers and processes; far slower on a busy machine
CLI = [sys.executable, str(ROOT / "cli.py")]
WORKER = [sys.executable, str(ROOT / "worker.py")]
UNITS = ROOT / "deploy" / "systemd"
CLASH = "clash"  # a namespace where TouchpointStep exists already, as a number


def start_dev_server(folder: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """A Temporal dev server WITHOUT Touchpoint's search attributes, as a fresh cluster is."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = dev_server_command(port, folder / "temporal.db", search_attributes=False)
    process = subprocess.Popen(
        [*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port, 60, process)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    process, port = start_dev_server(tmp_path_factory.mktemp("bare"), "--namespace", CLASH)
    yield port
    stop(process)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "shop", {"note": NOTE})


def touchpoint(
    project: Path, port: int, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = environment(
        TOUCHPOINT_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        TOUCHPOINT_DATABASE_URL=f"sqlite:///{project / 'touchpoint.db'}",
        **env,
    )
    return subprocess.run(
        [*CLI, *args, "-C", str(project)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def custom_attributes(port: int, namespace: str = "default") -> dict[str, int]:
    client = await Client.connect(f"127.0.0.1:{port}", namespace=namespace)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(listed.custom_attributes)


# --- touchpoint setup ------------------------------------------------------------------------


async def test_setup_registers_the_search_attributes_once(bare_server: int, project: Path) -> None:
    before = await custom_attributes(bare_server)
    assert not {key.name for key in ALL} & set(before)

    first = touchpoint(project, bare_server, "setup")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{key.name:<20} registered" for key in ALL]
    assert first.stderr.endswith(
        f"6 search attribute(s) registered, 0 already there, on namespace default at "
        f"127.0.0.1:{bare_server}\n"
    )
    after = await custom_attributes(bare_server)
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert {key.name: after.get(key.name) for key in ALL} == {key.name: keyword for key in ALL}

    again = touchpoint(project, bare_server, "setup")  # idempotent
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"{key.name:<20} already registered" for key in ALL]
    assert "0 search attribute(s) registered, 6 already there" in again.stderr

    # what the attributes are for: finding runs by them works now
    listed = touchpoint(project, bare_server, "runs", "list", "--journey", "note")
    assert (listed.returncode, listed.stderr) == (0, "0 run(s)\n")


async def test_setup_refuses_an_attribute_of_another_type_and_adds_nothing(
    bare_server: int, project: Path
) -> None:
    client = await Client.connect(f"127.0.0.1:{bare_server}", namespace=CLASH)
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=CLASH,
            search_attributes={"TouchpointStep": IndexedValueType.INDEXED_VALUE_TYPE_INT},
        )
    )
    done = touchpoint(project, bare_server, "setup", TOUCHPOINT_TEMPORAL_NAMESPACE=CLASH)
    assert_one_line(
        done,
        f"✗ namespace '{CLASH}' has TouchpointStep as Int, but Touchpoint needs it as Keyword: "
        "remove it (`temporal operator search-attribute remove`) or use another namespace; "
        "nothing was added\n",
    )
    assert set(await custom_attributes(bare_server, CLASH)) & {k.name for k in ALL} == {
        "TouchpointStep"
    }


def test_setup_names_a_namespace_that_does_not_exist(bare_server: int, project: Path) -> None:
    done = touchpoint(project, bare_server, "setup", TOUCHPOINT_TEMPORAL_NAMESPACE="nowhere")
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.startswith("✗ there is no namespace 'nowhere' on this Temporal server (")
    assert done.stderr.endswith(
        "); create it (`temporal operator namespace create`) or set "
        "TOUCHPOINT_TEMPORAL_NAMESPACE to one that exists\n"
    )


def test_setup_says_when_temporal_is_not_there(project: Path) -> None:
    port = free_port()
    done = touchpoint(project, port, "setup")
    assert_one_line(
        done,
        f"✗ Temporal is not reachable at 127.0.0.1:{port} (connection refused, tried for 5 s); "
        "start it (`touchpoint dev` runs one) or set TOUCHPOINT_TEMPORAL_ADDRESS\n",
    )


# --- touchpoint migrate ----------------------------------------------------------------------


def test_migrate_brings_a_new_store_to_the_newest_revision_and_repeats_safely(
    project: Path,
) -> None:
    from alembic.script import ScriptDirectory

    newest = ScriptDirectory(str(ROOT / "store" / "migrations")).get_current_head()
    database = project / "touchpoint.db"
    assert not database.exists()
    for _ in range(2):
        done = touchpoint(project, free_port(), "migrate")  # needs no Temporal
        assert (done.returncode, done.stderr) == (0, "")
        assert (
            done.stdout == f"the store sqlite:///{database} is at revision {newest} (the newest)\n"
        )
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(newest,)]


# --- the worker's health checks --------------------------------------------------------------


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def test_a_real_worker_is_ready_when_it_polls_and_not_when_temporal_is_gone(
    project: Path, tmp_path: Path
) -> None:
    server, temporal_port = start_dev_server(tmp_path / "temporal")
    health = free_port()
    env = environment(
        TOUCHPOINT_TEMPORAL_ADDRESS=f"127.0.0.1:{temporal_port}",
        TOUCHPOINT_DATABASE_URL=f"sqlite:///{project / 'touchpoint.db'}",
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [*WORKER, "--project", str(project), "--health-port", str(health)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert "touchpoint worker ready" in worker.stdout.readline(), (
            tmp_path / "worker.log"
        ).read_text()
        assert get(health, "/healthz").json() == {"status": "ok"}
        ready = get(health, "/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"ready": True, "temporal": True, "polling": True},
        )
        assert get(health, "/metrics").status_code == 404
        assert httpx.post(f"http://127.0.0.1:{health}/readyz").status_code == 405

        stop(server)  # Temporal goes away: the worker lives on, and is not ready
        deadline = time.monotonic() + 60
        while (ready := get(health, "/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "still ready 60 s after Temporal went away"
            time.sleep(0.5)
        assert (ready.status_code, ready.json()) == (
            503,
            {"ready": False, "temporal": False, "polling": True},
        )
        assert get(health, "/healthz").status_code == 200
        assert worker.poll() is None

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            get(health, "/healthz")
    finally:
        stop(server)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()  # type: ignore[union-attr]
        log.close()


def test_a_health_port_in_use_is_one_clear_line(bare_server: int, project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = environment(
            TOUCHPOINT_TEMPORAL_ADDRESS=f"127.0.0.1:{bare_server}",
            TOUCHPOINT_DATABASE_URL=f"sqlite:///{project / 'touchpoint.db'}",
            TOUCHPOINT_QUEUE_PREFIX="health-clash-",
        )
        [done] = run_all(
            [[*CLI, "worker", "--health-port", str(port), "-C", str(project)]], project, env
        )
    assert_one_line(
        done,
        f"✗ cannot serve the health checks on 127.0.0.1:{port} (Address already in use); "
        "give --health-port a free port\n",
    )


# --- Temporal over TLS: a CA file and a server name ------------------------------------------


def certificates(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A private CA, and a server certificate for ``name`` it signed: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Touchpoint test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsProxy:
    """Terminates TLS (HTTP/2 by ALPN, as gRPC needs) and passes the bytes on to a plain-text
    Temporal server: a cluster behind a TLS load balancer with a private CA."""

    def __init__(self, cert: Path, key: Path, upstream: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # the client refused our certificate: what the failing cases expect
            return
        server = socket.create_connection(("127.0.0.1", self.upstream))
        self.open += [client, server]
        threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
        self._pipe(client, server)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    target.sendall(data)
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for end in self.open:
            end.close()


@pytest.fixture(scope="module")
def tls_server(
    bare_server: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TlsProxy, Path]]:
    ca, cert, key = certificates(tmp_path_factory.mktemp("tls"), "temporal.internal")
    proxy = TlsProxy(cert, key, bare_server)
    yield proxy, ca
    proxy.close()


def tls_settings(port: int, **env: str):  # type: ignore[no-untyped-def]
    return load_settings(
        ProjectConfig.model_validate({}),
        environ={"TOUCHPOINT_TEMPORAL_ADDRESS": f"127.0.0.1:{port}", **env},
    )


async def test_a_cluster_with_a_private_ca_is_reached_by_ca_file_and_server_name(
    tls_server: tuple[TlsProxy, Path],
) -> None:
    proxy, ca = tls_server
    settings = tls_settings(
        proxy.port,
        TOUCHPOINT_TEMPORAL_TLS_CA=str(ca),
        TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME="temporal.internal",
    )
    client = await connect(settings)
    assert await client.service_client.check_health()
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version  # a real answer, through the TLS proxy


@pytest.mark.parametrize(
    ("env", "said"),
    [
        (
            {"TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME": "temporal.internal"},  # no CA: the system's
            "it is signed by a CA this client does not trust; set TOUCHPOINT_TEMPORAL_TLS_CA to "
            "the file of the CA that signed it",
        ),
        (
            {"TOUCHPOINT_TEMPORAL_TLS_CA": "CA"},  # connected by address, not by its name
            "it is for temporal.internal, not the host of the address; set "
            "TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME to the name it carries, or connect by that name",
        ),
    ],
)
async def test_a_certificate_that_is_not_trusted_is_refused_saying_what_to_set(
    tls_server: tuple[TlsProxy, Path], env: dict[str, str], said: str
) -> None:
    proxy, ca = tls_server
    settings = tls_settings(proxy.port, **{k: str(ca) if v == "CA" else v for k, v in env.items()})
    with pytest.raises(ConfigurationError) as refused:
        await connect(settings)
    assert str(refused.value) == (
        f"Temporal at 127.0.0.1:{proxy.port} presented a TLS certificate this client does not "
        f"accept: {said}"
    )


def test_a_ca_file_that_cannot_be_used_is_one_clear_line(project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    unreadable = tmp_path / "folder-ca.pem"
    unreadable.mkdir()
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    cases = [
        (missing, "cannot be read (No such file or directory)"),
        (unreadable, "cannot be read (Is a directory)"),
        (not_pem, "is not a PEM file (no -----BEGIN line)"),
    ]
    commands = [[*CLI, "runs", "list", "-C", str(project)] for _ in cases]
    for (path, said), done in zip(
        cases,
        [
            run_all(
                [command],
                project,
                environment(
                    TOUCHPOINT_TEMPORAL_ADDRESS="127.0.0.1:1",
                    TOUCHPOINT_DATABASE_URL=f"sqlite:///{project / 'touchpoint.db'}",
                    TOUCHPOINT_TEMPORAL_TLS_CA=str(path),
                ),
            )[0]
            for command, (path, _) in zip(commands, cases, strict=True)
        ],
        strict=True,
    ):
        ending = (
            "give the path of a PEM file this process can read"
            if "cannot be read" in said
            else "give the path of a PEM file"
        )
        assert_one_line(done, f"✗ TOUCHPOINT_TEMPORAL_TLS_CA={str(path)!r} {said}; {ending}\n")


def test_a_certificate_without_its_key_is_still_refused_with_a_ca() -> None:
    settings = load_settings(
        ProjectConfig.model_validate({}),
        environ={
            "TOUCHPOINT_TEMPORAL_TLS_CERT": "/etc/touchpoint/client.pem",
            "TOUCHPOINT_TEMPORAL_TLS_CA": "/etc/touchpoint/ca.pem",
        },
    )
    from config.settings import _tls

    with pytest.raises(ConfigurationError, match="TOUCHPOINT_TEMPORAL_TLS_CERT is set but "):
        _tls(settings)


# --- supervision: the systemd units ----------------------------------------------------------


def unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def exec_start(unit: Path) -> list[str]:
    [line] = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_the_units_run_commands_touchpoint_has() -> None:
    from typer.testing import CliRunner

    from cli import app

    assert [u.name for u in unit_files()] == [
        "touchpoint-api.service",
        "touchpoint-dashboard.service",
        "touchpoint-worker@.service",
    ]
    for unit in unit_files():
        command = exec_start(unit)
        assert Path(command[0]).name == "touchpoint"
        args = [a.replace("%i", "9401") for a in command[1:]]
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (unit.name, result.output)
        text = unit.read_text()
        assert "KillSignal=SIGTERM" in text and "Restart=on-failure" in text
    worker = (UNITS / "touchpoint-worker@.service").read_text()
    assert "--health-port %i" in worker


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` checks the syntax, the settings and that ExecStart's program
    exists; the units name /opt/touchpoint/venv/bin/touchpoint, so the copies checked here
    name this virtualenv's instead."""
    installed = Path(sys.executable).parent / "touchpoint"
    for unit in unit_files():
        text = unit.read_text().replace("/opt/touchpoint/venv/bin/touchpoint", str(installed))
        name = unit.name.replace("@.service", "@9401.service")
        (tmp_path / name).write_text(text)
        if name != unit.name:
            (tmp_path / unit.name).write_text(text)  # the template an instance comes from
    checked = [
        str(tmp_path / name)
        for name in (
            "touchpoint-api.service",
            "touchpoint-dashboard.service",
            "touchpoint-worker@9401.service",
        )
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *checked],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "touchpoint" in line
    ]
    assert (result.returncode, problems) == (0, []), result.stdout + result.stderr
