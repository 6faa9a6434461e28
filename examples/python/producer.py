#!/usr/bin/python3
"""Push NumPy frames into a shmringsink, for any number of shmringsrc consumers.

    appsrc (video/x-raw,format=RGBA) ! shmringsink socket-path=PATH

Each frame is a ``height x width x 4`` ``uint8`` array (RGBA); the sink copies
it once into a slot of its shared-memory arena. The frames here are a test
pattern, ``pattern(i, height, width)``, which the tests recompute to check
every byte that arrives.

Run with Debian's Python (``/usr/bin/python3``; packages python3-gi,
gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0, python3-numpy), with the
plugin installed (``make install``) or on ``GST_PLUGIN_PATH``:

    /usr/bin/python3 examples/python/producer.py --socket /tmp/np.sock --frames 300
    gst-launch-1.0 shmringsrc socket-path=/tmp/np.sock ! videoconvert ! autovideosink

By default the sink waits for a first consumer before taking frames, and
``push`` blocks while four frames wait for the sink; the wait for the sink to
take the last frame is bounded (``--timeout`` seconds).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst, GstApp  # noqa: E402

import numpy as np  # noqa: E402


def pattern(i, height, width):
    """Frame ``i``: R = x + i, G = y + 2i, B = x + y + 3i (all mod 256), A = 255."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 4), dtype=np.uint8)
    frame[..., 0] = (x + i) % 256
    frame[..., 1] = (y + 2 * i) % 256
    frame[..., 2] = (x + y + 3 * i) % 256
    frame[..., 3] = 255
    return frame


class Producer:
    """An ``appsrc ! shmringsink`` pipeline taking RGBA NumPy frames."""

    def __init__(self, socket_path, width, height, fps, extra=""):
        Gst.init(None)
        self.width, self.height, self.fps = width, height, fps
        self.pipeline = Gst.parse_launch(
            "appsrc name=src format=time block=true "
            f"caps=video/x-raw,format=RGBA,width={width},height={height},framerate={fps}/1 "
            f"! shmringsink socket-path={socket_path} {extra}"
        )
        self.src = self.pipeline.get_by_name("src")
        # At most 4 frames queued in appsrc: push() blocks while the sink is behind.
        self.src.set_property("max-bytes", 4 * width * height * 4)
        self.n = 0
        self.pipeline.set_state(Gst.State.PLAYING)

    def push(self, frame):
        """Sends one ``(height, width, 4)`` uint8 frame, stamped ``n / fps`` seconds."""
        if frame.shape != (self.height, self.width, 4) or frame.dtype != np.uint8:
            raise ValueError(f"want a ({self.height}, {self.width}, 4) uint8 array, got {frame.shape} {frame.dtype}")
        buf = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
        buf.pts = self.n * Gst.SECOND // self.fps
        buf.duration = Gst.SECOND // self.fps
        self.n += 1
        ret = self.src.emit("push-buffer", buf)
        if ret != Gst.FlowReturn.OK:
            raise RuntimeError(f"push-buffer: {ret.value_nick}")

    def finish(self, timeout=10.0):
        """Sends EOS and waits (at most ``timeout`` s) until the sink has taken every frame."""
        self.src.emit("end-of-stream")
        msg = self.pipeline.get_bus().timed_pop_filtered(
            int(timeout * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR
        )
        self.pipeline.set_state(Gst.State.NULL)
        if msg is None:
            raise RuntimeError(f"no EOS within {timeout} s")
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            raise RuntimeError(f"{err.message} ({debug})")

    def error(self):
        """The pipeline's pending error, if any (a consumer that broke the stream)."""
        msg = self.pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        return None if msg is None else msg.parse_error()[0].message


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True, help="socket-path for the shmringsink")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait at the end")
    ap.add_argument("--sink-props", default="", help="more shmringsink properties, e.g. 'slots=8'")
    args = ap.parse_args()

    producer = Producer(args.socket, args.width, args.height, args.fps, args.sink_props)
    try:
        for i in range(args.frames):
            err = producer.error()
            if err:
                raise RuntimeError(err)
            producer.push(pattern(i, args.height, args.width))
        producer.finish(args.timeout)
    except RuntimeError as e:
        producer.pipeline.set_state(Gst.State.NULL)
        print(f"error after {producer.n} frames: {e}", file=sys.stderr)
        return 1
    print(f"sent {producer.n} frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
