"""Which services the recorder runs, from the config: one line per capture path or job runner."""

from __future__ import annotations

from tapeline.config import Config
from tapeline.daemon.alarmwatch import AlarmWatch
from tapeline.daemon.diskwatch import DiskWatch
from tapeline.daemon.jobs import JobsService
from tapeline.daemon.recorder import Service
from tapeline.events.publisher import MqttPublisher


def build_services(config: Config) -> list[Service]:
    """The recorder's services for this config (each is started before READY=1)."""
    services: list[Service] = [DiskWatch(config), AlarmWatch(config)]
    if config.siprec.listen:
        from tapeline.daemon.siprec.service import SiprecService  # noqa: PLC0415  # optional

        services.append(SiprecService(config))
    if config.tap.interfaces:
        from tapeline.daemon.tap.service import TapService  # noqa: PLC0415  # optional

        services.append(TapService(config))
    if config.whatsapp.listen:
        from tapeline.daemon.whatsapp.service import WhatsappService  # noqa: PLC0415  # optional

        services.append(WhatsappService(config))
    if config.mqtt.url is not None:
        services.append(MqttPublisher(config))
    services.append(JobsService(config))
    return services
