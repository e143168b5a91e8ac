"""The names mq9_bench.py's workloads share with their clients: subjects, streams.

The benchmark creates what these name (a mailbox, the stream BENCH, the work-queue
stream BENCHWQ and its durable consumer) and the client processes publish and consume
there; one definition keeps the two sides agreeing.
"""

MQ9_MSG = "$mq9.AI.MAILBOX.MSG."   # + {mail_id}.{priority}
STREAM = "BENCH"                    # subjects bench.>
WQ_STREAM = "BENCHWQ"               # subjects benchwq.>, work-queue retention
WQ_SUBJECT = "benchwq.tasks"


def mq9_subject(mail_id: str, word: str = "normal") -> str:
    return f"{MQ9_MSG}{mail_id}.{word}"
