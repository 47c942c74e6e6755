"""HTTP routers: parse, call one service, render."""
