"""QoS 2 per-row results end to end in both modes (client mode on Mosquitto, the embedded broker), equal to DuckDB's."""

from __future__ import annotations

import orjson

from tests.support import unique


def test_qos2_per_row_results_end_to_end_match_duckdb_in_both_modes(broker, tmp_path):
    from tests.integration.test_end_to_end import config, duckdb_expected, make_rows, payload_of, received_rows

    prefix = unique()
    rows = make_rows(1000, seed=3)
    expected = duckdb_expected(rows)
    with broker.service(config(prefix, qos="2"), tmp_path):
        out = broker.collector([f"{prefix}/alerts/#"], qos=2)
        broker.publish_all([(f"{prefix}/factory/{r['line']}/{r['machine']}/telemetry", orjson.dumps(payload_of(r)))
                            for r in rows])
        got = received_rows(out.wait_for(len(expected)), f"{prefix}/alerts")
        out.close()
    assert got == expected
