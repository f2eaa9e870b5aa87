"""A sweep's runs that read the same data, trained together as one Lightning fit.

Most runs of the design card's sweeps are tiny networks whose step is all overhead, paid
once per run. Runs that share everything that decides their data and schedule (task, seed,
batch size, epochs, optimiser, schedule, trainer settings) and differ only in the network
(cell, hidden size, layers, dropout, initialisation, loss, L2, clipping) are one *group*:
one DataModule serves one batch per step to every member, same-cell members share one
recurrent kernel call (``seqnets.models.fused``), and Lightning's per-step work is paid once.

Each member is still its own run. It is built exactly as its solo run (seeded, then
``train.build``), so it starts from the same weights and reads the same batches; its
parameters have their own optimiser state (AdamW's state is per parameter), its gradients
are clipped by its own norm, it has its own best checkpoint, early stopping and divergence
guard; a member that diverges or stops early leaves the group and costs nothing after.
Its checkpoints are written in its own ``checkpoints/`` in a solo run's format
(``MemberCheckpointIO``): ``evaluate``, ``predict``, the demo and a resume read them as any
other. Training done, each member is tested, analysed and recorded by the solo path
(``train.run`` with its ``Fitted``) in its own Hydra job directory.

``plan``: which jobs group, and which process trains what; ``module``: the group's network;
``book``: each member's bookkeeping and checkpoints; ``launch``: what
``hydra/launcher=grouped`` (``hydra_plugins.seqnets_launcher``) runs.
"""
