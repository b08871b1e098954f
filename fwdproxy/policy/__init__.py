"""Pure policy: who may use the proxy and where they may go. No trio, sockets or files."""

from fwdproxy.policy.engine import Policy, PortRange, RequestFacts, Verdict

__all__ = ["Policy", "PortRange", "RequestFacts", "Verdict"]
