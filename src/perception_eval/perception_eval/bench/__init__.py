"""Node-level performance harness (``python -m perception_eval.bench``, run by ``make bench``).

The model libraries time their bare per-frame loops themselves (``python -m trackgpt.bench``,
``python -m avs.bench``); this harness measures what the ROS nodes add, in ONE run, with every ratio computed
inside that run (same machine, same load):

* bare model loop vs node throughput, frames/s (tracker and AVS): the library loop in this process against the
  node fed in closed loop (two frames in flight, so it is never idle and never drops; the second frame goes out
  ``--closed-loop-spacing-ms`` after the first, or both would reach the idle node together and its keep-last-1
  queue would keep only the second), in ``--throughput-windows`` alternating windows (bare, node, bare, ...,
  node, bare), so that a machine whose speed drifts biases neither; the tracker's bare loop runs on the CPUs of
  the node's frame thread (``--frame-cpus``), so both have one core to themselves;
* frame latency p50 / p99 with the brain idle and while it reasons (the headline ratio): a tracker node with the
  default tau (its brain idle once the instruction is answered) and one with ``tau = 1`` (the brain rethinks
  over and over, so frames are decoded while it works); only frames whose processing overlapped a brain call
  count as "while it reasons", and only frames that overlapped no brain call of either node as "idle". The two
  phases alternate in ``--latency-windows`` windows each (A, B, A, B, ...; before each A window B's call in flight
  is let finish), so a machine whose speed drifts during the run biases neither p99; the tracker nodes' brain runs
  on the last CPU and their frame thread on CPU 0 (``--brain-cpus`` / ``--frame-cpus``, default ``auto``), so the
  figures show what two separate cores give and not where the scheduler happened to put them;
* frames missed in live mode at 30 fps input, and frames queued beyond the newest (the node must always take
  the newest frame: a frame taken while a newer one had already been published for ``--queue-margin-ms`` is
  a queueing violation);
* resident memory (``VmRSS``) of the tracker and AVS node processes at the start and after
  ``--memory-minutes`` of 30 fps input with an instruction every ``--instruction-period`` s, growth in percent;
* reasoning latency per brain call (the nodes' ``Reasoning`` messages).

Targets reported against: node throughput >= 0.8x the bare loop; p99 latency while reasoning <= 1.5x the idle
p99; 0 frames queued beyond the newest in live mode; memory growth < 5 % (the issue asks it over 10 minutes:
``--memory-minutes 10``). Timing needs no trained weights: ``config:NAME`` models have random weights. The
full-size configurations are timed only with ``--full`` (``--device cuda`` where a GPU is present).

How to read the figures (and their limits):

* Frames are stamped with the wall clock when published and timed on arrival of the node's output in this
  process, so latencies include transport both ways and this process's own scheduling.
* "Queued beyond the newest" estimates when the node's single worker took a frame (when that frame was
  published or the node's previous output arrived here, whichever is later) and counts newer frames published
  more than ``--queue-margin-ms`` (one input period by default) before that. A node whose subscription
  callbacks are delayed (a busy interpreter) processes stale frames while newer ones wait in the DDS reader;
  that shows here even though its own queue holds one frame. ``queued_examples`` lists the first cases.
* Images go over a reliable keep-last-1 subscription (best-effort frames over about 0.5 MB are not delivered
  by Fast DDS's default transports on a stock machine). "missed" = frames published but never answered: in
  live mode these are frames replaced by newer ones, in the DDS reader or the node's queue (the node's own
  ``frames_dropped`` counts only the latter: ``node_reported_dropped``).
* Torch threads: the tracker node decodes on 1 thread (its ``frame_threads``) and so does its bare loop. The AVS
  node has no thread parameter and uses torch's default (all cores); on a loaded 2-core machine such a pool
  was measured 3 to 20 times slower than 1 thread, so ``--avs-threads`` (default 1) sets ``OMP_NUM_THREADS``
  for the AVS node and ``torch.set_num_threads`` for its bare loop alike (0: torch's default for both).
* The AVS node's audio comes from a child process of the harness (16 kHz, ``--audio-chunk`` samples per chunk,
  1 s ahead of the frames' stamps, same wall clock), so neither the bare loop nor the closed loop in this process
  can delay it; ``audio.late_ms_max`` says how late its chunks went out, ``no_audio`` counts frames the node
  scored NaN for want of audio.
* Other processes on the machine change every figure; ratios are taken inside one run, and the bare loops
  are timed right before and right after the node they are compared with.
"""
