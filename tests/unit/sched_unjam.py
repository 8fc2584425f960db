# coap.sched.receive() when the wait itself finds no heap, on the unix port: asyncio records the
# wait (a list), then registers the socket with its poll object, whose new entry is where the heap
# runs out. MicroPython 1.28 leaves that entry empty and the next poll() dereferences it: a
# segmentation fault here, a hard fault on a board. The receive task undoes the wait instead
# (coap.sched.unjam()) and tries again every 10 ms; once heap is back, datagrams are read again.
# Prints one JSON line.
#
#   micropython -X heapsize=128K tests/unit/sched_unjam.py PORT
import asyncio
import gc
import json
import socket
import sys

from coap import sched

PORT = int(sys.argv[1])
addr = socket.getaddrinfo("127.0.0.1", PORT)[0][-1]
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(addr)
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.connect(addr)

got = []
junk = [None] * (gc.mem_free() // 16)  # room for more floats than the heap holds
unjammed = [0]
undo = sched.unjam


def counted(q, sock):
    unjammed[0] += 1
    undo(q, sock)


sched.unjam = counted  # receive() looks it up per call


def starve():
    # The heap full of live floats (a block each), then two of them freed: room for asyncio's
    # record of the next wait (a list and its items, a block each) and none for the poll entry.
    i = 0
    try:
        while True:
            junk[i] = i + 0.5
            i += 1
    except MemoryError:
        pass
    junk[i - 1] = junk[i - 2] = None


def read_one():
    d = rx.recv(16)
    got.append(d)
    if d == b"starve":
        starve()
    return True


async def until(cond):
    while not cond():
        await asyncio.sleep_ms(1)


def has(d):
    return lambda: d in got


async def main():
    got.extend((None,) * 4)  # room in the list before the heap is full
    del got[:]
    task = asyncio.create_task(sched.receive(rx, read_one))
    tx.send(b"one")
    await until(has(b"one"))
    tx.send(b"starve")
    await until(lambda: unjammed[0] >= 3)  # the wait failed, was undone, and tried again: no crash
    for i in range(len(junk)):
        junk[i] = None
    gc.collect()
    tx.send(b"two")
    await until(has(b"two"))
    task.cancel()
    print(json.dumps({"got": [d.decode() for d in got], "unjammed": unjammed[0] >= 3, "internals": sched.internals}))


asyncio.run(main())
