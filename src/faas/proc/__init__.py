"""The process core: one way to run, watch, cap and describe a child process.

Standard library only: the guest agent ships it inside every VM image, and the
host tiers (namespace sandbox, microVM, docker) use the same pieces.

* ``capture.CappedBuffer`` keeps at most N bytes of a stream and says whether
  more arrived (the rest is read and dropped, never left in a pipe);
* ``exitwatch.ExitWatch`` turns a child's exit into a future on the running
  loop (a ``pidfd``; no threads, no child watcher) and reaps without blocking;
* ``child.ChildProcess`` runs one command with three pipes, a hard deadline
  and capped output, and returns an ``outcome.ProcessOutcome``;
* ``outcome`` also holds the one table of result messages every tier uses:
  the 128+N signal rule, timeouts, out-of-memory, command not found.
"""
