"""Autoscaling policy: a pure function from load samples and containers to containers to start and stop."""

from shipyard.autoscaler._policy import ContainerView, Decision, Sample, decide

__all__ = ["ContainerView", "Decision", "Sample", "decide"]
