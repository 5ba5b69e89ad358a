#!/usr/bin/env python3
"""Screenshots of every web console page for docs/web/: runs the demo's config in-process (embedded
broker and console on free ports, the device simulator publishing, the cnc stream archived), waits for
data, then saves one PNG per page with Debian's Chromium (scripts/ensure-chromium.sh).

    .venv/bin/python scripts/web-screenshots.py [--seconds 40] [--out docs/web]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402

from arros_mqtt.sim.demo import demo_config  # noqa: E402
from arros_mqtt.sim.simulator import SimOptions, simulate  # noqa: E402
from arros_mqtt.testing import HOST, free_port  # noqa: E402
from tests.integration.test_web_browser import chromium  # noqa: E402

PAGES = (("subscription", "/subscriptions/cnc_oee"), ("overview", "/"), ("streams", "/streams"),
         ("stream", "/streams/cnc"), ("subscriptions", "/subscriptions"),
         ("subscription-window", "/subscriptions/cnc_avg_10s"), ("editor", "/editor?name=cnc_alerts"),
         ("archives", "/archives"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the devices publish before")
    parser.add_argument("--out", default=str(ROOT / "docs" / "web"))
    args = parser.parse_args()
    from arros_mqtt.service.runtime import Service

    tmp = Path(tempfile.mkdtemp(prefix="arros-shots-"))
    web_port, mqtt_port = free_port(), free_port()
    config = demo_config(f"{HOST}:{mqtt_port}")
    streams = dict(config.streams, cnc=replace(config.streams["cnc"], archive=True))
    config = replace(config, streams=streams, web=replace(config.web, listen=f"{HOST}:{web_port}"),
                     engine=replace(config.engine, state_dir=str(tmp / "state")),
                     archive=replace(config.archive, dir=str(tmp / "archive"), roll_interval=5.0))
    service = Service(config)
    service.start()
    stop = threading.Event()
    devices = threading.Thread(target=simulate, args=(SimOptions(broker=f"mqtt://{HOST}:{mqtt_port}", seed=3), stop),
                               daemon=True)
    devices.start()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    driver = chromium(tmp / "profile")
    url = f"http://{HOST}:{web_port}"
    try:
        driver.get(url + "/subscriptions/cnc_oee")  # its means chart fills while the page is open
        time.sleep(args.seconds)
        for name, path in PAGES:
            if name != "subscription":
                driver.get(url + path)
                time.sleep(3)  # a few live updates
            if name == "editor":  # an explain of the SQL in the box, shown under it
                driver.find_element(By.ID, "op-explain").click()
                time.sleep(2)
            if name == "archives":
                driver.find_element(By.ID, "query-sql").clear()
                driver.find_element(By.ID, "query-sql").send_keys(
                    "SELECT date_trunc('second', ts) AS second, count(*) AS readings, avg(temp) AS avg_temp "
                    "FROM streams.cnc GROUP BY 1 ORDER BY 1")
                driver.find_element(By.ID, "run-query").click()
                time.sleep(2)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, min(max(900, height + 20), 2400))
            driver.save_screenshot(str(out / f"{name}.png"))
            driver.set_window_size(1280, 1000)
            print(f"{out / (name + '.png')}")
    finally:
        driver.quit()
        stop.set()
        devices.join(15)
        service.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
