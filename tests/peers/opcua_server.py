"""An OPC UA server (asyncua) on 127.0.0.1 for the connector tests.

    opcua_server.py PORT

Endpoint opc.tcp://127.0.0.1:PORT/; namespace 2 holds Line1 with writable variables
Speed (ns=2;i=1002, Double 0.0), Count (ns=2;s=Line1.Count, Int64 0) and Running (ns=2;s=Line1.Running,
Boolean false). The tests change them with an OPC UA client.
"""

import asyncio
import sys

from asyncua import Server, ua


async def main() -> None:
    port = int(sys.argv[1])
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:arros:tests")
    line = await server.nodes.objects.add_object(idx, "Line1")
    for node_id, name, value, kind in ((ua.NodeId(1002, idx), "Speed", 0.0, ua.VariantType.Double),
                                       (ua.NodeId("Line1.Count", idx), "Count", 0, ua.VariantType.Int64),
                                       (ua.NodeId("Line1.Running", idx), "Running", False, ua.VariantType.Boolean)):
        variable = await line.add_variable(node_id, name, ua.Variant(value, kind))
        await variable.set_writable()
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
