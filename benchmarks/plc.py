"""PLC gateway numbers: Sparkplug B decode throughput per micro-batch, and Modbus TCP poll latency.

    make bench-plc        (or: .venv/bin/python benchmarks/plc.py)

1. Sparkplug: DDATA messages with 10 aliased metrics each (Double, Int32, Boolean, String) after their
   births, decoded by the host (`SparkplugDecoder.decode`) in micro-batches of 1,000 messages; next to
   protobuf parsing alone (one `ParseFromString` per payload), the floor of any Python decoder.
2. Modbus: a pymodbus server on 127.0.0.1 (separate process); one poll = read + decode a 12-entry map
   (5 requests) with the connector's code; latency percentiles over 500 polls.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.decode.sparkplug.decoder import SparkplugDecoder  # noqa: E402
from arros_mqtt.testing import free_port, wait_for_port  # noqa: E402
from arros_mqtt.vendor import sparkplug_b_pb2 as pb  # noqa: E402

BATCH, BATCHES, METRICS = 1000, 20, 10


def sparkplug_messages() -> tuple[list[str], list[bytes]]:
    birth = pb.Payload(timestamp=1, seq=0)
    birth.metrics.add(name="bdSeq", datatype=8, long_value=0)
    dbirth = pb.Payload(timestamp=1, seq=1)
    kinds = [(10, "double_value", 1.5), (3, "int_value", 7), (11, "boolean_value", True), (12, "string_value", "ok")]
    for i in range(METRICS):
        datatype, field, value = kinds[i % 4]
        dbirth.metrics.add(name=f"m{i}", alias=i, datatype=datatype, **{field: value})
    topics, payloads = ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/DBIRTH/n/d"], [birth.SerializeToString(),
                                                                         dbirth.SerializeToString()]
    for n in range(BATCH * BATCHES):
        data = pb.Payload(timestamp=1_764_000_000_000 + n, seq=(n + 2) % 256)
        for i in range(METRICS):
            datatype, field, value = kinds[i % 4]
            data.metrics.add(alias=i, **{field: value if field != "double_value" else n * 0.5})
        topics.append("spBv1.0/g/DDATA/n/d")
        payloads.append(data.SerializeToString())
    return topics, payloads


def bench_sparkplug() -> dict:
    topics, payloads = sparkplug_messages()
    stream = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}}).streams["plc"]
    decoder = SparkplugDecoder(stream, lambda *args: None)
    decoder.decode(topics[:2], payloads[:2], [0, 0])
    data, data_topics = payloads[2:], topics[2:]
    batches = [(data_topics[i:i + BATCH], data[i:i + BATCH], [0] * BATCH) for i in range(0, len(data), BATCH)]
    start = time.perf_counter()
    rows = sum(decoder.decode(*batch)[0].num_rows for batch in batches)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches:
        for payload in batch[1]:
            pb.Payload.FromString(payload)
    one_by_one_s = time.perf_counter() - start
    messages = len(data)
    return {"messages": messages, "rows": rows, "decode_rows_per_s": rows / decode_s,
            "decode_msgs_per_s": messages / decode_s, "parse_only_msgs_per_s": messages / one_by_one_s}


def bench_modbus(polls: int = 500) -> dict:
    from pymodbus.client import AsyncModbusTcpClient

    from arros_mqtt.connectors.modbus import ModbusConnector, plan_reads
    from tests.unit.test_modbus_connector import REGISTERS, VALUES

    with tempfile.TemporaryDirectory() as directory:
        values = Path(directory) / "values.json"
        values.write_text(json.dumps(VALUES))
        port = free_port()
        server = subprocess.Popen([sys.executable, str(ROOT / "tests/peers/modbus_server.py"), str(port), str(values)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, 30)
            options = ModbusConnector.parse_options({"host": "127.0.0.1", "port": port, "registers": REGISTERS})
            spans = plan_reads(options.registers)

            async def run() -> list[float]:
                client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0)
                await client.connect()
                reads = {"holding": client.read_holding_registers, "input": client.read_input_registers,
                         "coil": client.read_coils, "discrete": client.read_discrete_inputs}
                latencies = []
                for _ in range(polls):
                    start = time.perf_counter()
                    row = {}
                    for span in spans:
                        result = await reads[span.table](span.address, count=span.count, device_id=1)
                        data = result.bits if span.table in ("coil", "discrete") else result.registers
                        for entry in span.registers:
                            offset = entry.address - span.address
                            row[entry.name] = entry.value(data[offset:offset + entry.width])
                    latencies.append(time.perf_counter() - start)
                client.close()
                return latencies

            latencies = sorted(asyncio.run(run()))
        finally:
            server.terminate()
            server.wait(10)
    ms = [x * 1000 for x in latencies]
    return {"polls": polls, "requests_per_poll": len(spans), "entries": len(REGISTERS),
            "p50_ms": statistics.median(ms), "p99_ms": ms[int(len(ms) * 0.99) - 1], "max_ms": ms[-1]}


def main() -> None:
    sparkplug = bench_sparkplug()
    print(f"sparkplug: {sparkplug['messages']:,} DDATA messages x {METRICS} metrics, batches of {BATCH:,}")
    print(f"  host decode (parse + aliases + seq + Arrow table): {sparkplug['decode_rows_per_s']:,.0f} rows/s "
          f"({sparkplug['decode_msgs_per_s']:,.0f} msgs/s)")
    print(f"  protobuf parse alone: {sparkplug['parse_only_msgs_per_s']:,.0f} msgs/s")
    modbus = bench_modbus()
    print(f"modbus: {modbus['entries']} entries in {modbus['requests_per_poll']} requests per poll, "
          f"{modbus['polls']} polls: p50 {modbus['p50_ms']:.2f} ms, p99 {modbus['p99_ms']:.2f} ms, "
          f"max {modbus['max_ms']:.2f} ms")
    (ROOT / "benchmarks" / "plc-results.json").write_text(json.dumps({"sparkplug": sparkplug, "modbus": modbus},
                                                                     indent=2) + "\n")


if __name__ == "__main__":
    main()
