"""User task 1: instantiate each vendor client and make one call.

    python examples/instantiate_clients.py [BASE_URL]

Without BASE_URL it starts the embedded simulator on a loopback port and talks to it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import resilient_client as rc
from resilient_client.simulator import Simulator, serve


@contextlib.contextmanager
def base_url(argv: list[str]) -> Iterator[str]:
    if len(argv) > 1:
        yield argv[1]
    else:
        with serve(Simulator()) as url:
            yield url


def main(url: str) -> None:
    # Credentials can also come from RESILIENT_CLIENT_<VENDOR>_... environment variables.
    with rc.UpdoxClient(
        base_url=f"{url}/updox",
        application_id="app",
        application_password="secret",
        account_id="a",
        user_id="u",
    ) as updox:
        print("updox  Ping ->", updox.ping()["responseCode"])
    with rc.UstaClient(base_url=f"{url}/usta", token_provider=lambda: "usta-token") as usta:
        print("usta   GET /v1/players/1 ->", usta.get("/v1/players/1").status_code)
    with rc.MedableClient(base_url=f"{url}/medable", client_key="client-key") as medable:
        medable.login("ann@example.test", "password")
        print("medable GET /accounts/me ->", medable.get("/accounts/me").json()["object"])
    with rc.HyperClient(base_url=f"{url}/hyper", token="hyper-token", timeout=10.0) as hyper:
        print(
            "hyper  POST /api/clients ->",
            hyper.post("/api/clients", json={"Name": "Ann"}).json()["ResponseCode"],
        )


if __name__ == "__main__":
    with base_url(sys.argv) as url:
        main(url)
