"""Anomaly rules: the events that say a credential may have leaked, as alerts.

- `new-network`: a credential authenticated from a network (/24, /64) it never used
  before. Its very first use is not an alert (every new credential has one).
- `failure-burst`: one login failed `failure_burst` times within the guard's window.
- `revoked-credential` / `expired-credential`: the right secret of a revoked or expired
  credential was tried: it is out there and someone is using it.
- `canary`: the secret of a canary credential was used (it never logs in): it has leaked.
- `out-of-scope`: a credential was used from a network or for a sender it is not allowed.
- `password-spray`: failures on many logins from many sources within the guard's window
  (the guard detects it and marks the failure that revealed it, `details.spray`).
- `volume`: a credential sent, within the last hour, `volume_factor` times its hourly
  average over `volume_baseline` (and at least `volume_min_messages`; for a device, whose
  quota is low, at least `device_volume_min_messages`).
- `device-elsewhere`: a device's right secret from an address other than its own, or on
  587/465 (where a device's secret never works): someone copied it out of the device.
- `device-recipient`: a device wrote to a recipient outside its list (refused 550 5.7.1).
- `device-no-tls`: a device set up for TLS logged in without it (refused): STARTTLS was
  stripped on the way, or the device was reset; its secret crossed the network in clear.

The rules run in the audit writer's thread, after a batch is stored, so their database
questions see every worker's events. Each alert has a dedupe key (rule, subject, time
bucket); the alerts table keeps it unique, so many workers raising the same alert store
and send it once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from smtpgate.audit import events as ev
from smtpgate.audit.store import Alert, AuditStore
from smtpgate.credentials.model import FailureReason


@dataclass(frozen=True)
class AlertSettings:
    failure_burst: int = 20
    failure_window: float = 600.0
    volume_factor: float = 10.0
    volume_min_messages: int = 50
    device_volume_min_messages: int = 10
    volume_baseline: timedelta = timedelta(days=7)
    recheck_after: float = 60.0   # seconds between two exact volume counts of one credential


@dataclass
class _Volume:
    checked_at: datetime
    counted: int          # accepted messages in the last hour at the last count
    seen: int             # seen by this worker since
    threshold: float
    alerted: int = -1     # the hour bucket already alerted on: nothing to count until the next


def _bucket(time: datetime, seconds: float) -> int:
    return int(time.timestamp() // seconds)


class AnomalyDetector:
    def __init__(self, store: AuditStore, settings: AlertSettings = AlertSettings(), *, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._networks: OrderedDict[str, set[str]] = OrderedDict()
        self._volume: dict[str, _Volume] = {}

    def examine(self, batch: Sequence[tuple[int, ev.AuditEvent, str]]) -> list[Alert]:
        """(id, event, network) of stored events -> the alerts they raise, in order."""
        alerts: list[Alert] = []
        for event_id, event, network in batch:
            alert = self._examine(event_id, event, network)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _examine(self, event_id: int, e: ev.AuditEvent, network: str) -> Alert | None:
        if e.kind == ev.AUTH and e.result == ev.OK and e.credential_id:
            return self._new_network(event_id, e, network)
        if e.kind == ev.AUTH and e.result == ev.FAIL:
            if e.reason in (FailureReason.REVOKED, FailureReason.EXPIRED):
                what = "revoked" if e.reason == FailureReason.REVOKED else "expired"
                return self._alert(
                    f"{what}-credential", "critical", e,
                    f"the {what} credential {e.credential_id} of {e.login} was tried from {e.remote_ip}",
                    f"{e.credential_id}:{e.remote_ip}:{_bucket(e.time, 3600)}",
                )
            if e.reason == FailureReason.CANARY:
                return self._alert(
                    "canary", "critical", e,
                    f"the canary credential {e.credential_id} of {e.login} was used from {e.remote_ip}: "
                    f"it has leaked from where it was planted; the source is banned",
                    f"{e.credential_id}:{e.remote_ip}:{_bucket(e.time, 3600)}",
                )
            device = str(e.details.get("device", ""))
            if device and e.reason in (FailureReason.IP_NOT_ALLOWED, FailureReason.DEVICE_LEGACY_ONLY):
                where = f"on {e.listener}" if e.reason == FailureReason.DEVICE_LEGACY_ONLY else "from another address"
                return self._alert(
                    "device-elsewhere", "critical", e,
                    f"the secret of device {device} ({e.credential_id}, {e.login}) was used {where}: {e.remote_ip}",
                    f"{e.credential_id}:{e.remote_ip}:{e.listener}:{_bucket(e.time, 3600)}",
                    {"device": device},
                )
            if device and e.reason == ev.TLS_REQUIRED:
                return self._alert(
                    "device-no-tls", "critical", e,
                    f"device {device} ({e.credential_id}, {e.login}) logged in without TLS from {e.remote_ip} though "
                    f"set up for it: STARTTLS stripped on the way, or the device reset; its secret crossed the "
                    f"network in clear, rotate it",
                    f"{e.credential_id}:{_bucket(e.time, 3600)}",
                    {"device": device},
                )
            if e.reason == FailureReason.IP_NOT_ALLOWED:
                return self._alert(
                    "out-of-scope", "warning", e,
                    f"credential {e.credential_id} of {e.login} was used from {e.remote_ip}, outside its allowed networks",
                    f"{e.credential_id}:ip:{e.remote_ip}:{_bucket(e.time, 3600)}",
                )
            if e.details.get("spray"):
                window = self.settings.failure_window
                return self._alert(
                    "password-spray", "critical", e,
                    f"password spraying: failed logins on many logins from many sources within {int(window // 60)} min "
                    f"(the last from {e.remote_ip}); sources are now banned after a few failures",
                    f"spray:{_bucket(e.time, window)}",
                )
            failures = int(e.details.get("login_failures", 0) or 0)
            if failures >= self.settings.failure_burst:
                window = self.settings.failure_window
                return self._alert(
                    "failure-burst", "warning", e,
                    f"{failures} failed logins for {e.login} within {int(window // 60)} min, the last from {e.remote_ip}",
                    f"{e.login.strip().lower()}:{_bucket(e.time, window)}",
                    {"failures": failures},
                )
        if e.kind == ev.MESSAGE and e.result == ev.FAIL and e.reason == ev.SENDER_NOT_ALLOWED:
            address = str(e.details.get("address", ""))
            return self._alert(
                "out-of-scope", "warning", e,
                f"credential {e.credential_id} of {e.login} tried to send as {address or 'a sender'} it may not use",
                f"{e.credential_id}:sender:{address}:{_bucket(e.time, 3600)}",
                {"address": address, "where": e.details.get("where", "")},
            )
        if e.kind == ev.MESSAGE and e.result == ev.FAIL and e.reason == ev.RECIPIENT_NOT_ALLOWED:
            device = str(e.details.get("device", ""))
            recipient = str(e.details.get("recipient", ""))
            return self._alert(
                "device-recipient", "warning", e,
                f"device {device or e.credential_id} of {e.login} tried to send to {recipient}, outside its list",
                f"{e.credential_id}:{recipient}:{_bucket(e.time, 3600)}",
                {"device": device, "recipient": recipient},
            )
        if e.kind == ev.MESSAGE and e.result == ev.OK and e.credential_id:
            return self._volume_check(e)
        return None

    def _alert(self, rule: str, severity: str, e: ev.AuditEvent, summary: str, key: str,
               details: dict[str, object] | None = None) -> Alert:
        return Alert(
            rule=rule, severity=severity, summary=summary, dedupe_key=f"{rule}:{key}", time=e.time,
            login=e.login, credential_id=e.credential_id, remote_ip=e.remote_ip,
            details={"reason": e.reason, "listener": e.listener, **(details or {})},
        )

    # ------------------------------------------------------------ new network

    def _new_network(self, event_id: int, e: ev.AuditEvent, network: str) -> Alert | None:
        credential = e.credential_id
        assert credential is not None
        known = self._networks.get(credential)
        if known is not None and network in known:
            self._networks.move_to_end(credential)
            return None
        known = self._store.credential_networks(credential, event_id)
        first_use = not known
        new = network not in known
        known.add(network)
        self._networks[credential] = known
        self._networks.move_to_end(credential)
        while len(self._networks) > 10_000:
            self._networks.popitem(last=False)
        if first_use or not new:
            return None
        return self._alert(
            "new-network", "warning", e,
            f"credential {credential} of {e.login} was used from a new network {network} ({e.remote_ip})",
            f"{credential}:{network}",
            {"network": network, "known_networks": sorted(known - {network})[:20]},
        )

    # ----------------------------------------------------------------- volume

    def _volume_check(self, e: ev.AuditEvent) -> Alert | None:
        s = self.settings
        credential = e.credential_id
        assert credential is not None
        now = self._clock()
        state = self._volume.get(credential)
        if state is not None:
            if state.alerted == _bucket(now, 3600):
                return None
            state.seen += 1
            fresh = (now - state.checked_at).total_seconds() < s.recheck_after
            if fresh and state.counted + state.seen < state.threshold:
                return None  # counting here: one database count per crossing, or per recheck_after
        last_hour, trailing, first = self._store.message_volume(credential, now=now, baseline=s.volume_baseline)
        hour_ago = now - timedelta(hours=1)
        history = 0.0
        if first is not None and first < hour_ago:
            history = (hour_ago - max(first, now - s.volume_baseline)).total_seconds() / 3600
        baseline = trailing / history if history >= 1 else 0.0
        floor = s.device_volume_min_messages if e.details.get("device") else s.volume_min_messages
        threshold = max(float(floor), s.volume_factor * baseline)
        if len(self._volume) > 10_000:
            self._volume.clear()
        alerted = _bucket(now, 3600) if last_hour >= threshold else -1
        self._volume[credential] = _Volume(now, last_hour, 0, threshold, alerted)
        if last_hour < threshold:
            return None
        what = f"device {e.details['device']} ({credential})" if e.details.get("device") else f"credential {credential}"
        return self._alert(
            "volume", "critical", e,
            f"{what} of {e.login} sent {last_hour} messages in the last hour "
            f"(its usual is {baseline:.1f} an hour)",
            f"{credential}:{_bucket(now, 3600)}",
            {"last_hour": last_hour, "baseline_per_hour": round(baseline, 2), "threshold": threshold},
        )
