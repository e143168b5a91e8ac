"""A queue-group worker that takes tasks and never acknowledges them (until it is killed).

Usage: python -m tests.agents.greedy_worker URL MAIL_ID QUEUE
Prints `GOT <payload> <delivery>` for each task, so a test can kill it mid-work.
"""

import asyncio
import sys

import nats


async def main(url: str, mail_id: str, queue: str) -> None:
    nc = await nats.connect(url)

    async def on_task(msg) -> None:
        print(f"GOT {msg.data.decode()} {msg.headers.get('mq9-delivery')}", flush=True)

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{mail_id}.*", queue=queue, cb=on_task)
    await nc.flush()
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
