# A planned hand-over of the Redis master role that loses no acknowledged write (POSIX sh;
# needs redis-cli and sleep). The chart's preStop runs it in the Redis container; operators
# can run it the same way instead of a bare SENTINEL FAILOVER, which promotes a replica
# without waiting for it to catch up while the old master keeps acknowledging writes.
#
#   1. CLIENT PAUSE WRITE on this master: from now on it acknowledges no write (reads go on).
#   2. Wait until every replica a Sentinel could promote has this master's offset.
#   3. SENTINEL FAILOVER through another pod's Sentinel, so that the Sentinels run the
#      switch, bump the epoch and agree on the new master (Redis's own FAILOVER command,
#      done behind their back, would leave them naming this node until they fail over again).
#   4. As soon as one of those replicas reports itself master, REPLICAOF it here, then
#      CLIENT UNPAUSE: the writes held by the pause get READONLY, which the services retry
#      on the master the Sentinels name (or answer 503), never acknowledged here.
#   5. Wait until the Sentinels name the new master (bounded).
#
# If the pause cannot be made safe (no Sentinel answers, a replica does not catch up, no
# failover starts) it unpauses and exits 1 without a hand-over: the pod's SIGTERM then makes
# Redis wait for its replicas before it exits, and the Sentinels fail over after
# down-after-milliseconds. Once a failover has started, writes stay paused until a replica
# is master (or the pause ends with HANDOVER_TIMEOUT_SECONDS); so do they when a Sentinel
# asked for one did not answer in time, since it may have started one.
#
# Environment:
#   REDISCLI_AUTH               password of the Redis servers (this one and its replicas)
#   REDIS_SENTINEL_PASSWORD     password of the Sentinels
#   HANDOVER_SENTINELS          space-separated host:port of Sentinels to ask (not this pod's:
#                               it is stopping too)
#   MASTER_SET                  the master set the Sentinels monitor
#   HANDOVER_REDIS_HOST/_PORT   this Redis (default 127.0.0.1 6379)
#   HANDOVER_ADDRESS            host:port the Sentinels know this Redis by (default the above)
#   HANDOVER_TIMEOUT_SECONDS    bound of the whole hand-over and of the pause (default 20)
#   HANDOVER_CATCHUP_MS         bound of step 2 (default 500); keep it below the Sentinels'
#                               down-after-milliseconds: a paused master does not answer their
#                               PUBLISH, and they could start a failover of their own
#   HANDOVER_CALL_TIMEOUT_SECONDS  bound of each redis-cli call (default 1)
# Exit status: 0 handed over or nothing to do (not a master), 1 not handed over.
set -u
SCRIPT=${SCRIPT:-handover}
HOST=${HANDOVER_REDIS_HOST:-127.0.0.1}
PORT=${HANDOVER_REDIS_PORT:-6379}
TIMEOUT=${HANDOVER_TIMEOUT_SECONDS:-20}
CATCHUP_MS=${HANDOVER_CATCHUP_MS:-500}
SENTINELS=${HANDOVER_SENTINELS:-}
CALL_TIMEOUT=${HANDOVER_CALL_TIMEOUT_SECONDS:-1}
ME=${HANDOVER_ADDRESS:-$HOST:$PORT}
# Polls are POLL seconds apart; deadlines count polls (no `date` needed), so they are lower
# bounds on the time spent.
POLL=0.05
PER_SECOND=20
CR=$(printf '\r')

log() { echo "$SCRIPT: $*" >&2; }

# redis-cli, killed after CALL_TIMEOUT s: it has no timeout of its own, and a frozen server
# or a lost node would otherwise hold the script, and the pause, until the grace period ends.
cli() {
  redis-cli --raw -e "$@" &
  _pid=$!
  (sleep "$CALL_TIMEOUT" && kill "$_pid") >/dev/null 2>&1 &
  _watch=$!
  wait "$_pid"
  _status=$?
  kill "$_watch" 2>/dev/null
  return "$_status"
}

redis_at() { # host port command...: a command to a Redis server (REDISCLI_AUTH)
  _host=$1 _port=$2
  shift 2
  cli -h "$_host" -p "$_port" "$@" 2>/dev/null
}

sentinel_at() { # host:port command...: a command to a Sentinel (its error on stderr)
  _address=$1
  shift
  (
    REDISCLI_AUTH="${REDIS_SENTINEL_PASSWORD:-}"
    export REDISCLI_AUTH
    cli -h "${_address%:*}" -p "${_address##*:}" "$@"
  )
}

# INFO replication of host port into I_ROLE, I_OFFSET (this server's replication offset),
# I_LINK (a replica's master_link_status), I_SECOND (second_repl_offset) and I_REPLICAS
# (the connected replicas as host:port words); returns 1 when the server does not answer.
info_of() {
  I_ROLE='' I_OFFSET='' I_LINK='' I_SECOND='' I_REPLICAS=''
  _info=$(redis_at "$1" "$2" INFO replication) || return 1
  while IFS= read -r _line; do
    _line=${_line%"$CR"}
    case $_line in
      role:*) I_ROLE=${_line#role:} ;;
      master_repl_offset:*) I_OFFSET=${_line#master_repl_offset:} ;;
      master_link_status:*) I_LINK=${_line#master_link_status:} ;;
      second_repl_offset:*) I_SECOND=${_line#second_repl_offset:} ;;
      slave[0-9]*:ip=*)
        _fields=${_line#*:} _ip='' _rport=''
        _rest=$_fields,
        while [ -n "$_rest" ]; do
          _field=${_rest%%,*}
          _rest=${_rest#*,}
          case $_field in
            ip=*) _ip=${_field#ip=} ;;
            port=*) _rport=${_field#port=} ;;
          esac
        done
        I_REPLICAS="$I_REPLICAS $_ip:$_rport"
        ;;
    esac
  done <<EOF
$_info
EOF
  [ -n "$I_ROLE" ]
}

# The replicas the Sentinel at $1 could promote (not down, not disconnected), as host:port.
sentinel_candidates() {
  _answer=$(sentinel_at "$1" SENTINEL REPLICAS "$MASTER_SET" 2>/dev/null) || return 1
  _result='' _ip='' _rport='' _flags='' _key=''
  while IFS= read -r _line; do
    if [ -z "$_key" ]; then
      _key=$_line
      continue
    fi
    case $_key in
      name)
        # a new replica: keep the previous one if it is up
        [ -z "$_ip" ] || case ",$_flags," in
          *,s_down,* | *,o_down,* | *,disconnected,*) ;;
          *) _result="$_result $_ip:$_rport" ;;
        esac
        _ip='' _rport='' _flags=''
        ;;
      ip) _ip=$_line ;;
      port) _rport=$_line ;;
      flags) _flags=$_line ;;
    esac
    _key=''
  done <<EOF
$_answer
EOF
  [ -z "$_ip" ] || case ",$_flags," in
    *,s_down,* | *,o_down,* | *,disconnected,*) ;;
    *) _result="$_result $_ip:$_rport" ;;
  esac
  CANDIDATES=$_result
}

unpause() { redis_at "$HOST" "$PORT" CLIENT UNPAUSE >/dev/null || log "CLIENT UNPAUSE failed"; }

give_up() { # without a hand-over: writes resume here
  unpause
  log "$* : no hand-over (writes resumed on this master)"
  exit 1
}

if ! info_of "$HOST" "$PORT" || [ "$I_ROLE" != master ]; then
  exit 0 # a replica (or no Redis): nothing to hand over
fi

# A Sentinel that answers, and the replicas it could promote.
SENTINEL=''
for address in $SENTINELS; do
  if sentinel_candidates "$address"; then
    SENTINEL=$address
    break
  fi
  log "the Sentinel at $address does not answer"
done
[ -n "$SENTINEL" ] || {
  log "no Sentinel answers: no hand-over"
  exit 1
}

# 1. No write is acknowledged here from now on.
redis_at "$HOST" "$PORT" CLIENT PAUSE "$((TIMEOUT * 1000))" WRITE >/dev/null || {
  log "CLIENT PAUSE failed: no hand-over"
  exit 1
}
info_of "$HOST" "$PORT" || give_up "this Redis stopped answering"
OFFSET=$I_OFFSET
# Every replica this master feeds, and every one the Sentinel could choose.
candidates=''
for replica in $I_REPLICAS $CANDIDATES; do
  case " $ME $candidates " in
    *" $replica "*) ;;
    *) candidates="$candidates $replica" ;;
  esac
done
[ -n "$candidates" ] || give_up "no replica"
log "writes paused at offset $OFFSET; replicas:$candidates"

# 2. Until each of them has processed everything this master acknowledged.
polls=0
while :; do
  behind=''
  for replica in $candidates; do
    # One that does not answer cannot be confirmed, yet a Sentinel might still promote it.
    info_of "${replica%:*}" "${replica##*:}" || give_up "$replica does not answer"
    if [ "$I_ROLE" != slave ] || [ "$I_LINK" != up ] || [ "${I_OFFSET:-0}" -lt "$OFFSET" ]; then
      behind="$behind $replica"
    fi
  done
  [ -n "$behind" ] || break
  polls=$((polls + 1))
  [ "$polls" -lt $((CATCHUP_MS * PER_SECOND / 1000)) ] \
    || give_up "not caught up after $CATCHUP_MS ms:$behind"
  sleep "$POLL"
done
log "every replica has offset $OFFSET"

# 3. The Sentinels choose one of them and promote it.
started='' unanswered=''
tries=0
while [ -z "$started" ] && [ "$tries" -lt 10 ]; do
  tries=$((tries + 1))
  for address in $SENTINEL $SENTINELS; do
    # The error (INPROG, NOGOODSLAVE ...) is on stderr.
    answer=$(sentinel_at "$address" SENTINEL FAILOVER "$MASTER_SET" 2>&1) && answer=OK
    case $answer in
      OK | *INPROG*)
        started=$address
        break
        ;;
      '') unanswered=$address ;; # cut off by the call's bound: it may have started one
    esac
    log "the Sentinel at $address: ${answer:-no answer}"
  done
  [ -n "$started" ] || sleep 0.2
done
if [ -n "$started" ]; then
  log "the Sentinel at $started runs the failover"
elif [ -n "$unanswered" ]; then
  # Unpausing now could let this node acknowledge writes that the promotion then drops.
  log "no Sentinel confirmed a failover, $unanswered did not answer: waiting for a promotion"
else
  give_up "no Sentinel started a failover"
fi

# 4. The replica that reports itself master is the new one: follow it at once.
NEW=''
polls=0
while [ -z "$NEW" ]; do
  for replica in $candidates; do
    if info_of "${replica%:*}" "${replica##*:}" && [ "$I_ROLE" = master ]; then
      NEW=$replica
      break
    fi
  done
  [ -z "$NEW" ] || break
  polls=$((polls + 1))
  if [ "$polls" -ge $((TIMEOUT * PER_SECOND)) ]; then
    # Unpausing could let this node acknowledge writes that a late promotion drops.
    log "no replica promoted after ${TIMEOUT} s; writes stay paused until the pause ends"
    exit 1
  fi
  sleep "$POLL"
done
redis_at "$HOST" "$PORT" REPLICAOF "${NEW%:*}" "${NEW##*:}" >/dev/null \
  || log "REPLICAOF $NEW failed"
# second_repl_offset: one past the last offset of the old history the new master has.
if [ -n "$I_SECOND" ] && [ "$I_SECOND" -gt "$OFFSET" ]; then
  log "$NEW is master with everything up to offset $OFFSET; this Redis follows it"
else
  log "WARNING: $NEW was promoted at offset $((${I_SECOND:-1} - 1)), below $OFFSET"
fi
unpause

# 5. Until the Sentinels name the new master to the services (a few seconds at most: the
# hand-over is done, this only tells the log).
polls=0
while [ "$polls" -lt $((5 * PER_SECOND)) ]; do
  named=0 asked=0
  for address in $SENTINELS; do
    if answer=$(sentinel_at "$address" SENTINEL GET-MASTER-ADDR-BY-NAME "$MASTER_SET" \
      2>/dev/null); then
      asked=$((asked + 1))
      # shellcheck disable=SC2086 # the host and the port on two lines
      set -- $answer
      [ "$#" -ne 2 ] || [ "$1:$2" != "$NEW" ] || named=$((named + 1))
    fi
  done
  if [ "$asked" -gt 0 ] && [ "$named" -eq "$asked" ]; then
    log "handed over to $NEW: every Sentinel that answers names it"
    exit 0
  fi
  polls=$((polls + 1))
  sleep "$POLL"
done
log "handed over to $NEW; some Sentinels still name another master"
exit 0
