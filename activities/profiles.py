"""``read_profile``: the customer's current profile, for a step of a run that reads it.

A local activity of the journey worker (it runs beside the workflow, without a task queue of
its own): the answer is recorded in the run's history, so a replay sees what the run saw.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import activity

from store.profiles import ProfileStore
from workflows.models import READ_PROFILE_ACTIVITY, ProfileAnswer, ProfileRequest


@dataclass
class ProfileReader:
    profiles: ProfileStore

    @activity.defn(name=READ_PROFILE_ACTIVITY)
    async def read_profile(self, request: ProfileRequest) -> ProfileAnswer:
        found = await asyncio.to_thread(self.profiles.get, request.customer_id)
        return ProfileAnswer(profile=found)
