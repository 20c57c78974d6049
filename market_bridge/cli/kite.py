"""`market-bridge kite ...`: log in to Kite and check the stored session."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console

from market_bridge.kite import credentials as creds
from market_bridge.kite.errors import KiteError
from market_bridge.kite.models import IST
from market_bridge.kite.rest import KiteRest

kite_app = typer.Typer(help="Kite Connect login and session.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@kite_app.command("login")
def login(
    request_token: str | None = typer.Option(
        None, "--request-token", "-r",
        help="The request_token from the redirect URL after logging in (prompted if absent)."),
) -> None:
    """Exchange a request_token for an access token and store it (mode 0600)."""
    c = creds.from_env()
    if not c.api_key:
        err.print("error: set ZERODHA_API_KEY (or KITE_API_KEY) to your Kite Connect app's key")
        raise typer.Exit(2)
    if not c.api_secret:
        err.print("error: set ZERODHA_API_SECRET (or KITE_API_SECRET) to your app's secret")
        raise typer.Exit(2)
    rest = KiteRest(c.api_key, root=creds.api_root())
    if not request_token:
        console.print("1. Open this URL, log in, and copy request_token from the redirect:")
        console.print(f"   {rest.login_url()}", soft_wrap=True)
        request_token = typer.prompt("2. request_token").strip()
    try:
        session = rest.generate_session(request_token, c.api_secret)
    except KiteError as exc:
        err.print(f"error: login failed: {exc}")
        raise typer.Exit(1) from None
    login_time = session.get("login_time")
    when = (login_time.replace(tzinfo=IST) if isinstance(login_time, datetime)
            else datetime.now(IST))
    path, expires = creds.store_session(c.api_key, session["access_token"],
                                        str(session.get("user_id", "")), when)
    console.print(f"logged in as {session.get('user_id', '?')}; access token stored in {path} "
                  f"(mode 0600)")
    console.print(f"it expires at {expires:%Y-%m-%d %H:%M} IST; log in again after that")


@kite_app.command("status")
def status() -> None:
    """Show which Kite credentials are configured (masked) and when the token expires."""
    creds.load_env_file()
    c = creds.from_env()
    values = creds.read_env_file(creds.env_file())
    console.print(f"api root: {creds.api_root() or 'Kite production (kiteconnect default)'}")
    console.print(f"ws root:  {creds.ws_root()}")
    console.print(f"api_key: {creds.mask(c.api_key) or 'not set'}; access_token: "
                  f"{'set' if c.access_token else 'not set'}")
    if "KITE_TOKEN_EXPIRES_AT" in values:
        expires = datetime.fromisoformat(values["KITE_TOKEN_EXPIRES_AT"])
        state = "expired" if expires <= datetime.now(IST) else "valid until"
        console.print(f"stored session: {state} {expires:%Y-%m-%d %H:%M} IST")
