# A --hub-config-extra file (bench/run.py): samples the hub's main thread while its event loop
# is blocked, to name what stalls the API in a storm. Profiling only: it costs the hub a thread
# waking every 20 ms. Writes loop-stalls.log in the hub's working folder (bench: hubNN-<package>/):
# each stall over 150 ms, then the stacks seen most during it (20 ms per sample).
#   bash bench/run.sh --only tiny --packages ours --hub-config-extra bench/extras/loop_stalls.py


def _watch_loop_stalls(threshold=0.15, every=0.02, path="loop-stalls.log"):
    import asyncio
    import collections
    import sys
    import threading
    import time
    import traceback

    try:
        loop = asyncio.get_running_loop()  # the config file is read inside the hub's loop
    except RuntimeError:
        return
    main = threading.main_thread().ident

    def frames_key(frame):
        stack = traceback.extract_stack(frame)[-14:]
        return " < ".join(f"{s.name}@{s.filename.rsplit('/', 1)[-1]}:{s.lineno}" for s in reversed(stack))

    def watch():
        while True:
            ticked = threading.Event()
            t0 = time.monotonic()
            try:
                loop.call_soon_threadsafe(ticked.set)
            except RuntimeError:  # the loop is closed: the hub is gone
                return
            seen = collections.Counter()
            while not ticked.wait(every) and not loop.is_closed():
                frame = sys._current_frames().get(main)
                if frame is not None:
                    seen[frames_key(frame)] += 1
            lag = time.monotonic() - t0
            if lag > threshold:
                with open(path, "a") as f:
                    f.write(f"{time.time():.2f} loop blocked {lag:.3f} s\n")
                    for key, n in seen.most_common(4):
                        f.write(f"   {n * every:.2f} s {key}\n")
            time.sleep(every)

    threading.Thread(target=watch, name="loop-stalls", daemon=True).start()


_watch_loop_stalls()
