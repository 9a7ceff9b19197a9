"""Exit 0 when the PostgreSQL and Redis servers named on the command line answer (used by `make test`)."""

import sys

import dj_database_url
import psycopg
import redis


def main(database_url, redis_url):
    db = dj_database_url.parse(database_url)
    try:
        # The suite creates its own test database; the server's "postgres" one is enough to knock.
        psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"], dbname="postgres", connect_timeout=3
        ).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except (psycopg.Error, redis.RedisError) as e:
        print(f"Not reachable: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
