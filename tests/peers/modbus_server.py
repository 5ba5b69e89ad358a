"""A Modbus TCP server (pymodbus) on 127.0.0.1 with known values, for the connector tests.

    modbus_server.py PORT VALUES_JSON

VALUES_JSON holds {"holding": [...], "input": [...], "coil": [...], "discrete": [...]}: 16-bit words
and bits from address 0, for device (unit) 1. Clients may write holding registers and coils.
"""

import asyncio
import json
import sys
from pathlib import Path

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


def block(values: list) -> ModbusSequentialDataBlock:
    # pymodbus 3.16 serves protocol address N from block address N + 1
    return ModbusSequentialDataBlock(1, values)


async def main() -> None:
    port, values = int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    device = ModbusDeviceContext(hr=block(values.get("holding", [0])), ir=block(values.get("input", [0])),
                                 co=block(values.get("coil", [0])), di=block(values.get("discrete", [0])))
    await StartAsyncTcpServer(context=ModbusServerContext(devices={1: device}, single=False),
                              address=("127.0.0.1", port))


if __name__ == "__main__":
    asyncio.run(main())
