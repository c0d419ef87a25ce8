"""Local speaker: a sound card (or sound server) on the engine's own machine, through PyAudio/PortAudio.

PortAudio is initialised and terminated around every announcement: it enumerates devices only at init, so a
USB sound card or sound server that appears after start-up is found on the next announcement.

The stream is opened with a ``BUFFER_S`` buffer and written in ``CHUNK_S`` pieces: the engine's detector keeps the
CPUs busy, and a low-latency buffer that runs dry between two writes is heard as gaps; between pieces the stop
event and the deadline (audio + ``SETUP_S`` + margin, ``speakers.deadline``) are checked.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pyaudio

from speakers.audio import Pcm, apply_gain
from speakers.base import PlaybackInterrupted, SpeakerError, SpeakerHealth
from speakers.config import LocalSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health
from speakers.live import TALK_MAX_S, LiveFeed

SETUP_S = 5.0  # PortAudio init, device enumeration, opening and draining the stream
CHUNK_S = 0.1  # audio per write: the stop event and the deadline are checked between writes
BUFFER_S = 0.2  # device buffer: rides out a busy CPU (the detector) without an audible gap

OutputDevice = tuple[int, str, int]
"""(PortAudio device index, device name, max output channels)."""

_PA_LOCK = threading.Lock()  # Pa_Initialize/Pa_Terminate keep an unsynchronised reference count
_SILENCERS: list[Any] = []  # ctypes callbacks must stay alive as long as the C libraries hold them


def _silence_native_audio_logs() -> None:
    """Drop ALSA and JACK diagnostics that PortAudio's probing prints to stderr (~30 lines per init).

    Only the libraries' own log hooks are replaced, so real Python errors still reach stderr.
    """
    if _SILENCERS:
        return
    alsa_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
    jack_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    hooks: list[tuple[str, tuple[str, ...], Any]] = [
        ("libasound.so.2", ("snd_lib_error_set_handler",), alsa_handler(lambda *_: None)),
        ("libjack.so.0", ("jack_set_error_function", "jack_set_info_function"), jack_handler(lambda _: None)),
    ]
    for library, setters, callback in hooks:
        try:
            lib = ctypes.CDLL(library)
            for setter in setters:
                getattr(lib, setter)(callback)
        except (OSError, AttributeError):
            continue  # library absent (other OS, no JACK): nothing to silence
        _SILENCERS.append(callback)
    _SILENCERS.append(None)  # marks "done" even when no library was found


def _open_portaudio() -> pyaudio.PyAudio:
    _silence_native_audio_logs()
    with _PA_LOCK:
        return pyaudio.PyAudio()


def _close_portaudio(pa: pyaudio.PyAudio) -> None:
    with _PA_LOCK:
        pa.terminate()


def _output_devices(pa: pyaudio.PyAudio) -> list[OutputDevice]:
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        channels = int(info["maxOutputChannels"])
        if channels > 0:
            devices.append((index, str(info["name"]), channels))
    return devices


def list_output_devices() -> list[OutputDevice]:
    """Output devices PortAudio sees right now, for config help and error messages."""
    pa = _open_portaudio()
    try:
        return _output_devices(pa)
    finally:
        _close_portaudio(pa)


def describe_devices(devices: Sequence[OutputDevice]) -> str:
    """Human-readable device list for error messages."""
    if not devices:
        return "no output devices (no sound card, or sound server not reachable: check PULSE_SERVER)"
    return "available output devices: " + ", ".join(f"{i}: {name!r}" for i, name, _ in devices)


def select_output_device(devices: Sequence[OutputDevice], wanted: str | int, default_index: int | None) -> int:
    """Pick the device index for ``wanted``: an index, "default", or a case-insensitive name substring.

    An exact (case-insensitive) name wins over substring matches; among those the lowest index wins.
    Raises LookupError when nothing fits.
    """
    if isinstance(wanted, int):
        if any(i == wanted for i, _, _ in devices):
            return wanted
        raise LookupError(f"no output device with index {wanted}")
    needle = wanted.strip().lower()
    if needle == "default":
        if default_index is None:
            raise LookupError("there is no default output device")
        return default_index
    exact = [i for i, name, _ in devices if name.lower() == needle]
    partial = [i for i, name, _ in devices if needle in name.lower()]
    if exact or partial:
        return (exact or partial)[0]
    raise LookupError(f"no output device whose name contains {wanted!r}")


def _default_output_index(pa: pyaudio.PyAudio) -> int | None:
    try:
        return int(pa.get_default_output_device_info()["index"])
    except OSError:  # PortAudio: "No Default Output Device Available"
        return None


class LocalSpeaker:
    """Plays announcements on a local output device (see module docstring)."""

    def __init__(self, name: str, config: LocalSpeakerConfig) -> None:
        self.name = name
        self.config = config

    @property
    def sample_rate(self) -> int:
        """The rate the device is opened at (the sound server resamples if the hardware differs)."""
        return self.config.rate

    @property
    def _label(self) -> str:
        return f"speaker {self.name!r} (local device {self.config.device!r})"

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """Play ``audio`` to the end (PortAudio's stop_stream drains the buffers), or raise SpeakerError.

        ``stop`` ends it within a chunk (the buffered rest is discarded). Deadline: audio + SETUP_S + margin.
        """
        if audio.rate != self.sample_rate:
            raise SpeakerError(f"speaker {self.name!r} (local) needs {self.sample_rate} Hz, got {audio.rate}")
        deadline = Deadline.for_playback(self._label, audio.duration_s, SETUP_S, "for the sound system")
        deadline.run(lambda: self._play(apply_gain(audio, self.config.gain_db), stop, deadline), stop)

    def _play(self, audio: Pcm, stop: threading.Event, deadline: Deadline) -> None:
        self._with_device(lambda pa, index: self._write(pa, index, audio, stop, deadline))

    def _with_device(self, operation: Callable[[pyaudio.PyAudio, int], None]) -> None:
        """``operation`` on the configured device, PortAudio opened around it; its errors as SpeakerErrors."""
        pa = _open_portaudio()
        try:
            operation(pa, self._device_index(pa))
        except (OSError, ValueError) as exc:
            raise SpeakerError(f"{self._label}: {exc}") from exc
        finally:
            _close_portaudio(pa)

    @property
    def talk_buffer_s(self) -> float:
        """The device buffer plus one write: what the sound card holds is the delay."""
        return BUFFER_S + CHUNK_S

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Write ``feed`` to the device as it arrives (the card plays silence when none comes) until it ends."""
        deadline = Deadline(SETUP_S + TALK_MAX_S, self._label, "talk")
        deadline.run(lambda: self._with_device(lambda pa, index: self._talk(pa, index, feed, stop)), stop)

    def _talk(self, pa: pyaudio.PyAudio, index: int, feed: LiveFeed, stop: threading.Event) -> None:
        stream = self._open_stream(pa, index)
        try:
            while (samples := feed.take(int(self.sample_rate * CHUNK_S), CHUNK_S, partial=True)) is not None:
                if stop.is_set():
                    raise PlaybackInterrupted(f"{self._label}: interrupted on request")
                if len(samples):
                    data = apply_gain(Pcm(samples, self.sample_rate), self.config.gain_db).samples.tobytes()
                    stream.write(data)
                    feed.stats.sent(len(samples), len(data))
            stream.stop_stream()
        finally:
            stream.close()

    def health(self) -> SpeakerHealth:
        """The configured device is present (PortAudio enumeration, within HEALTH_S)."""
        return check_health(self.name, self._label, HEALTH_S, lambda _: self._device_problem())

    def _device_problem(self) -> str | None:
        devices = list_output_devices()
        try:
            select_output_device(devices, self.config.device, devices[0][0] if devices else None)
        except LookupError as exc:
            return f"speaker {self.name!r} (local): {exc}"
        return None

    def _device_index(self, pa: pyaudio.PyAudio) -> int:
        devices = _output_devices(pa)
        try:
            return select_output_device(devices, self.config.device, _default_output_index(pa))
        except LookupError as exc:
            raise SpeakerError(f"speaker {self.name!r} (local): {exc}; {describe_devices(devices)}") from None

    def _write(self, pa: pyaudio.PyAudio, index: int, audio: Pcm, stop: threading.Event, deadline: Deadline) -> None:
        rate = self.sample_rate
        stream = self._open_stream(pa, index)
        try:
            step = int(rate * CHUNK_S)
            for start in range(0, len(audio.samples), step):
                if stop.is_set():
                    raise PlaybackInterrupted(f"{self._label}: interrupted on request")
                deadline.check()
                stream.write(audio.samples[start : start + step].tobytes())
            stream.stop_stream()  # drains what is buffered; close() alone would discard it
        finally:
            stream.close()

    def _open_stream(self, pa: pyaudio.PyAudio, index: int) -> pyaudio.Stream:
        return pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=self.sample_rate,
            output=True,
            output_device_index=index,
            frames_per_buffer=int(self.sample_rate * BUFFER_S / 2),  # PortAudio keeps at least two of these buffered
        )
