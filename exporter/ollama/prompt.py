"""The prompt a probe sends: the profile's prompt behind a nonce, padded to a size if asked.

Ollama caches the KV state of a repeated prompt, which would turn prefill into a no-op and
make prompt tokens/s meaningless. A short random nonce at the *start* of the prompt changes
the first tokens, so the cache cannot match past the chat template's fixed prefix.

``prompt_tokens: N`` measures prefill on a prompt of a known size: built-in prose fills the
prompt, nonce first, to about N tokens, with the profile's prompt (the question) last. The
size is reckoned at ``CHARS_PER_TOKEN`` characters per token, the usual ratio for English
prose; real tokenizers differ by model, which is why the server's own count is exported.
"""

from __future__ import annotations

import secrets

from exporter.config import ProbeProfile

CHARS_PER_TOKEN = 4

# Built-in filler: plain English prose, written for this project. Repeated as needed.
FILLER = (
    "The harbour wakes before the town does. Fishing boats slip their moorings in the grey "
    "light, engines coughing, gulls already circling the sterns in hope of an early meal. "
    "On the breakwater an old man checks the sky the way his father taught him: the colour "
    "of the clouds over the headland, the set of the swell against the rocks, the smell of "
    "the wind. A falling glass and a backing wind mean weather by evening. The lighthouse "
    "keeper, long since replaced by a lamp that turns itself, still walks the path to the "
    "tower each morning out of habit. Tides here rise twice a day, pulled by a moon that "
    "nobody thinks about until a spring tide floods the lower road. Charts of the bay show "
    "soundings in fathoms, wrecks marked with small crosses, and a sandbank that moves a "
    "little further east every winter. Sailors learn the channel by its buoys: red to port "
    "coming in, green to starboard, and the bell buoy off the point that rings in any sea. "
    "Out past the shelf the water turns from green to a deep, cold blue, and the long "
    "Atlantic rollers arrive from storms that blew themselves out a thousand miles away. "
    "Whales pass in spring, following the krill; in autumn the herring come, and the boats "
    "follow them. Salt gets into everything: the paint on the doors, the hinges of the "
    "windows, the pages of the books in the library by the quay. "
)


def new_nonce() -> str:
    """Eight hex digits: unique enough that consecutive probes never share a prompt."""
    return secrets.token_hex(4)


def build_prompt(profile: ProbeProfile, nonce: str) -> str:
    """The nonce, then (for ``prompt_tokens``) filler up to the size, then the prompt.

    With ``prompt_tokens`` the result has exactly ``prompt_tokens * CHARS_PER_TOKEN``
    characters, unless the nonce and the prompt alone are longer.
    """
    head, tail = f"[{nonce}] ", profile.prompt
    if profile.prompt_tokens is None:
        return head + tail
    room = profile.prompt_tokens * CHARS_PER_TOKEN - len(head) - len(tail) - 2
    if room <= 0:
        return head + tail
    repeats = room // len(FILLER) + 1
    return head + (FILLER * repeats)[:room] + "\n\n" + tail
