"""Policy: who may use the proxy and where they may go, decided by pure functions.

Owns canonical names (`names`), rule lines (`rules`), the rule set (`index`), policy.yaml
(`policies`, `policyfile`), the decisions (`engine`), lint (`lint`) and reading a rules
folder (`rulefiles`, the one room here that reads files). May import `errors` and itself
only: never `proxy/`, `site/`, trio, h11 or socket.
"""

from fwdproxy.policy.engine import Policy, PortRange, RequestFacts, Verdict

__all__ = ["Policy", "PortRange", "RequestFacts", "Verdict"]
