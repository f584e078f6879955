"""A single-node Apache Kafka (KRaft) broker on loopback, for development and the test suite.

The broker's jars come from Maven Central through `deploy/kafka/pom.xml`, which pins the
version, and are cached under `.cache/kafka/<version>/`; the JDK on the machine runs them.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
CACHE = REPO_ROOT / ".cache" / "kafka"

_LOG4J2 = """\
Configuration:
  Appenders:
    File:
      name: FILE
      fileName: "{log}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
"""


class LocalKafkaError(RuntimeError):
    pass


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if match is None:
        raise LocalKafkaError(f"{POM} does not pin <kafka.version>")
    return match.group(1)


def fetch_jars() -> Path:
    """Download the broker and its runtime dependencies once; return the folder of jars."""
    if not POM.exists():
        raise LocalKafkaError(f"{POM} is missing: run this from a klantreis checkout")
    target = CACHE / kafka_version()
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise LocalKafkaError("the local broker needs `mvn` and `java` (a JDK 17) on PATH")
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(
        [
            "mvn",
            "--batch-mode",
            "--quiet",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    marker.touch()
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalKafka:
    """Format a fresh KRaft log in a folder and run the broker until `stop` (or context exit).

    `start` after `stop` restarts the same broker: same ports, same data.
    """

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self._own_dir = data_dir is None
        self.dir = data_dir or Path(tempfile.mkdtemp(prefix="klantreis-kafka-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    def start(self, timeout: float = 90.0) -> None:
        jars = fetch_jars()
        classpath = f"{jars}/*"
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        properties = self.dir / "server.properties"
        properties.write_text(
            _SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data=data
            )
        )
        log_config = self.dir / "log4j2.yaml"
        log_config.write_text(_LOG4J2.format(log=self.log_file))
        java = ["java", f"-Dlog4j2.configurationFile={log_config}", "-cp", classpath]
        if not (data / "meta.properties").exists():
            subprocess.run(
                [
                    *java,
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    cluster_id(),
                    "--config",
                    str(properties),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.log_file.unlink(missing_ok=True)  # a restart must not see the last run's start line
        self._process = subprocess.Popen(
            [*java[:1], "-Xms256m", "-Xmx768m", *java[1:], "kafka.Kafka", str(properties)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "broker.stderr").open("wb"),
        )
        self._wait_until_started(timeout)

    def _wait_until_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise LocalKafkaError(
                    f"the broker exited with {self._process.returncode}; see {self.dir}"
                )
            if self.log_file.exists() and "Kafka Server started" in self.log_file.read_text():
                return
            time.sleep(0.2)
        self.stop()
        raise LocalKafkaError(f"the broker did not start within {timeout:.0f}s; see {self.dir}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no controlled shutdown, transactions left open."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).

    Never one starting with "-", which the storage tool would read as an option (Kafka's own
    `Uuid.randomUuid` skips those for the same reason).
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
