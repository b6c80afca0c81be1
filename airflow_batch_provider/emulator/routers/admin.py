"""``/_emulator/faults``: read and change the faults in force (served with ``enable_admin``)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from airflow_batch_provider.emulator.dependencies import FaultsDep
from airflow_batch_provider.emulator.faults import ADMIN_PATH, FaultSettings

log = logging.getLogger(__name__)

router = APIRouter(prefix=ADMIN_PATH, tags=["emulator admin"])


@router.get("", summary="The fault rules in force")
async def get_faults(faults: FaultsDep) -> FaultSettings:
    return faults.settings


@router.put("", summary="Replace the fault rules")
async def put_faults(settings: FaultSettings, faults: FaultsDep) -> FaultSettings:
    faults.replace(settings)
    log.info("Faults replaced: %s", [rule.describe() for rule in settings.rules])
    return faults.settings


@router.delete("", summary="Remove every fault rule")
async def delete_faults(faults: FaultsDep) -> FaultSettings:
    faults.clear()
    log.info("Faults removed")
    return faults.settings
