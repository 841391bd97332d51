"""Federated training on Flower: one global model from data that stays in each silo.

:mod:`~forgeline.federated.simulation` runs every silo on this machine;
:mod:`~forgeline.federated.deployment` runs the coordinator and each silo as Flower's SuperLink
and SuperNodes, across machines. Both drive the same two sides of the protocol,
:mod:`~forgeline.federated.server` and :mod:`~forgeline.federated.client`, and register the
result as an ordinary model version (:mod:`~forgeline.federated.registration`).
"""
