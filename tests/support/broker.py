"""What a Celery deployment leaves in its Redis broker, and removing it once the deployment stops.

Celery (kombu's Redis transport) keeps, per queue, a list of waiting messages (``<queue>``) and
its bindings (``_kombu.binding.<queue>``, ``_kombu.binding_permanent.<queue>``); for the whole
database it keeps the messages taken but not acknowledged (hash ``unacked``, zset
``unacked_index``, by delivery tag). A worker killed mid-task leaves its message there, and kombu
would push it back onto its queue after the visibility timeout (a day, in Airflow). Each
:class:`~tests.support.deployment.AirflowDeployment` has a queue of its own, so removing that
queue's keys and unacknowledged messages leaves a shared Redis as the deployment found it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


def queue_keys(queue: str) -> list[str]:
    """The Redis keys kombu keeps for one queue."""
    return [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]


def unacked_of(client: Redis, queue: str) -> list[str]:
    """Delivery tags of the unacknowledged messages routed to ``queue``."""
    found = []
    for tag, value in client.hgetall(UNACKED).items():
        try:
            _, _, routing_key = json.loads(value)
        except (ValueError, TypeError):
            continue  # not a message kombu wrote
        if routing_key == queue:
            found.append(str(tag))
    return found


def leftovers(broker_url: str, queue: str) -> list[str]:
    """What the broker still holds of ``queue``: its keys and ``unacked:<tag>`` per message."""
    import redis

    with redis.Redis.from_url(broker_url, decode_responses=True) as client:
        keys = [key for key in queue_keys(queue) if client.exists(key)]
        return keys + [f"{UNACKED}:{tag}" for tag in unacked_of(client, queue)]


def forget_queue(broker_url: str, queue: str) -> None:
    """Remove ``queue``'s keys and its unacknowledged messages from the Redis at ``broker_url``."""
    import redis

    with redis.Redis.from_url(broker_url, decode_responses=True) as client:
        client.delete(*queue_keys(queue))
        if tags := unacked_of(client, queue):
            client.hdel(UNACKED, *tags)
            client.zrem(UNACKED_INDEX, *tags)
