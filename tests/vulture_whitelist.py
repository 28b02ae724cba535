"""What vulture (the dead-code check in tests/run) cannot see being used, each with why.

Never imported or run: vulture reads the names. Anything else it reports is dead: delete it
rather than add it here. Code reached only by tests counts as dead too, unless said below.
"""

# ruff: noqa: B018

from releaseosd.app import cli, daemon
from releaseosd.dashboard import cards
from releaseosd.listeners import desktop as notify
from releaseosd.media import ffmpeg
from releaseosd.model import config, sidecar, store, yamlfile
from releaseosd.model import track as track_module
from releaseosd.pipeline import stability
from releaseosd.rehearsal import sandbox, wire
from releaseosd.web import served

# click commands: registered by their @<group>.command decorators, called by click.
cli.config_show
cli.doctor
cli.init
cli.auth_setup
cli.auth_login
cli.auth_status
cli.auth_logout
cli.service_install
cli.service_uninstall
cli.service_status
cli.ui

# Jinja templates (releaseosd/dashboard/templates) read these by name.
cards.Card.badge
cards.Card.release_shown
cards.Card.has_preview
cards.Card.can_retry
cards.Card.retry_label
cards.Card.can_release
cards.Card.can_remove
# uvicorn's Server.serve calls it.
served._QuietServer.main_loop

# pydantic: model_config is read by the metaclass; validators run through their decorators.
config.StrictModel.model_config
config.SoundCloudConfig._http_url
config.SoundCloudConfig._loopback
config.UploadsConfig._ordered
config.ArtworkConfig._colour
config.Config._distinct
sidecar.SidecarDefaults._tags_are_list
sidecar.SidecarDefaults._no_quotes
sidecar.Sidecar._bpm_number
sidecar.Sidecar._musical_key
sidecar.Sidecar._isrc
sidecar.Sidecar._datetime_with_time
sidecar.Sidecar._local_if_naive
sidecar.Sidecar._one_or_many
sidecar.Sidecar._artwork_inside
sidecar.Sidecar._release_date_default
# pydantic fields read through model_dump (label: metadata's label_name and {label}).
sidecar.SidecarDefaults.label
# Stored with the record (the store's JSON); written when a track goes public.
track_module.RemoteTrack.published_at
# Read from the stored record by track.doc_status_row (status rows are made without models).
track_module.Track.artwork_stale
track_module.Track.updated_at
# Part of the value compared: an export whose mtime changed is another file.
track_module.AudioStat.mtime_ns
stability.FileIdentity.mtime_ns
# Part of a folder's identity: a new directory in a deleted one's inode is another folder.
track_module.FolderStat.born_ns

# The sandbox's endpoints: its route table names them, its cycle finds them with getattr.
sandbox.Sandbox._authorize
sandbox.Sandbox._token
sandbox.Sandbox._sign_out
sandbox.Sandbox._me
sandbox.Sandbox._me_tracks
sandbox.Sandbox._me_playlists
sandbox.Sandbox._get_track
sandbox.Sandbox._put_track
sandbox.Sandbox._delete_track
sandbox.Sandbox._create_playlist
sandbox.Sandbox._get_playlist
sandbox.Sandbox._put_playlist
sandbox.Sandbox._delete_playlist
# Written whole with asdict: /me answers the quota; state.json keeps each track's asset size
# (which TestSandbox.upload_of, in tests/sandbox_tools, reports).
sandbox.Quota.upload_seconds_used
sandbox._Track.asset_bytes

# reprlib.Repr: limits and repr_<type> methods it reads by name.
yamlfile._ShortRepr.maxlevel
yamlfile._ShortRepr.maxlist
yamlfile._ShortRepr.maxtuple
yamlfile._ShortRepr.maxset
yamlfile._ShortRepr.maxfrozenset
yamlfile._ShortRepr.maxdict
yamlfile._ShortRepr.maxlong
yamlfile._ShortRepr.maxother
yamlfile._ShortRepr.repr_str
yamlfile._ShortRepr.repr_int
# notify-py reads this private attribute when it sends (an empty icon: the desktop's own).
notify.NotifyPySender._notification_icon

# Reached only by tests, kept on purpose:
# the seam TestSandbox's faults use to cut or slow an upload's body (tests/sandbox_tools).
wire.Body.through
# the in-process stop tests/e2e/daemon_harness.py uses (signals set the same event).
daemon.Daemon.request_stop
# where the in-process daemon's dashboard listens (other processes read dashboard.json).
daemon.Daemon.dashboard_url
# which ffprobe find_ffmpeg saw; tests check that the bundled ffmpeg needs none.
ffmpeg.Ffmpeg.ffprobe
# the store as it is on disk, without the daemon's lock: the tests' harness and chaos checks.
store.read_tracks
