"""Speed presets: `quality` names a number of denoising steps (NFE).

`fast` and `balanced` use f5-tts's EPSS schedules (empirically pruned step sampling,
`f5_tts.model.utils.get_epss_timesteps`, which has schedules for NFE 5, 6, 7, 10, 12
and 16); `best` is F5-TTS's published default of 32 uniform steps. The default stays
`best` until a GPU measurement shows a lower preset sounds as good.
"""

from __future__ import annotations

from handler.errors import UserError

QUALITY_NFE: dict[str, int] = {"fast": 7, "balanced": 16, "best": 32}
DEFAULT_NFE = QUALITY_NFE["best"]
EPSS_NFE = frozenset({5, 6, 7, 10, 12, 16})


def resolve_nfe(quality: str | None, nfe_step: int, nfe_step_sent: bool) -> tuple[int, str | None]:
    """(NFE to use, the preset it is) from a job's `quality` and `nfe_step`.

    Sending both is fine when they agree; when they disagree the job is refused rather
    than one silently winning. The preset name is None for an NFE no preset has.
    """
    if quality is not None:
        preset = QUALITY_NFE[quality]
        if nfe_step_sent and nfe_step != preset:
            raise UserError(
                f"quality {quality!r} means nfe_step {preset}, but nfe_step {nfe_step} was "
                "sent too; send only one of them"
            )
        return preset, quality
    named = next((name for name, nfe in QUALITY_NFE.items() if nfe == nfe_step), None)
    return nfe_step, named
