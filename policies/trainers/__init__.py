"""Trainers: one module per RL library, each owning its env adapter.

:mod:`karakuri.policies.trainers.registry` maps a trainer's name to its module; every module
exposes ``train(cfg, resume)`` and ``load_actor(run_dir)`` (the contract is
:class:`karakuri.policies.trainers.base.Trainer`).  This package imports nothing itself, so
importing one trainer never imports another's library.
"""
