#!/usr/bin/env bash
# A real auth service behind nginx's `auth_request`, for the upstream bench's
# "≥ 5× nginx with auth_request" row: Debian's LemonLDAP::NG (an SSO whose
# documented nginx integration is `auth_request` to its FastCGI handler),
# with its Demo user backend and its sessions in files.
#
#   llng.sh --install              install the Debian packages when missing
#                                  (`make bench`, best effort: exits 0 and
#                                  the bench's row says what is missing)
#   llng.sh start DIR APP NGINX    start LLNG and an nginx on 127.0.0.1:NGINX
#                                  that sends `Host: test1.example.com`
#                                  through auth_request to APP; sign in as
#                                  dwho through the real portal; print
#                                  `COOKIE=lemonldap=<id>` and exit 0, the
#                                  daemons left running (pids in DIR/pids)
#   llng.sh stop DIR               stop them
#
# Everything lives under DIR; nothing under /etc or /var is written. The
# Debian demo configuration is read and copied with its storage moved to DIR
# and test1.example.com's rule set to `default => accept` (any signed-in user).
set -euo pipefail

PKGS="lemonldap-ng-fastcgi-server liblemonldap-ng-handler-perl liblemonldap-ng-portal-perl libgd-securityimage-perl libimage-magick-perl libcookie-baker-xs-perl libhttp-parser-xs-perl nginx curl"
LLNG_BIN=/usr/sbin/llng-fastcgi-server
SHIPPED_CONF=/var/lib/lemonldap-ng/conf/lmConf-1.json
# FCGI::ProcManager's workers: llng-fastcgi-server's documented default.
NPROC=${LLNG_NPROC:-7}

log() { echo "llng.sh: $*" >&2; }
die() { log "$*"; exit 1; }

missing() {
    local m=
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || m="$m $p"
    done
    echo "$m"
}

install() {
    local m
    m=$(missing)
    [ -z "$m" ] && { echo "LemonLDAP::NG: installed"; return 0; }
    # Recommends, not Depends, but needed: the portal always loads its
    # captcha module (GD::SecurityImage, which uses Image::Magick); the two
    # XS modules only make it faster, as a packaged install has them.
    echo "installing LemonLDAP::NG:$m"
    if [ "$(id -u)" != 0 ]; then log "not root: cannot install$m"; return 0; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $m >/dev/null ||
        { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $m >/dev/null; } ||
        log "install failed:$m"
    return 0
}

stop() {
    local dir=$1 pids kids= alive=
    [ -f "$dir/pids" ] || return 0
    pids=$(grep -E '^[0-9]+$' "$dir/pids" || true)
    for p in $pids; do kids="$kids $(pgrep -P "$p" 2>/dev/null | tr '\n' ' ')"; done
    # FCGI::ProcManager ends its workers on TERM; nginx's TERM is a fast stop.
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=
        for p in $pids $kids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $alive; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$dir/pids" "$dir"/run/*.sock "$dir"/run/*.pid
}

start() {
    local dir=$1 app=$2 port=$3
    local m
    m=$(missing)
    [ -z "$m" ] || die "not installed:$m (make bench installs them)"
    [ -x "$LLNG_BIN" ] && [ -r "$SHIPPED_CONF" ] || die "$LLNG_BIN or $SHIPPED_CONF missing"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop "$dir"
    # llng-fastcgi-server refuses to run as root.
    local user group
    if [ "$(id -u)" = 0 ]; then user=www-data group=www-data; else user=$(id -un) group=$(id -gn); fi
    mkdir -p "$dir"/{etc,conf,sessions/lock,psessions/lock,cache,notifications,run,logs,nginx/tmp}
    chmod 755 "$dir"

    # LLNG reads /etc/lemonldap-ng/lemonldap-ng.ini unless LLNG_DEFAULTCONFFILE
    # names another (Lemonldap::NG::Common::Conf::getLocalConf). Debian's
    # ini re-reads the configuration every second (checkTime = 1); this one
    # keeps LLNG's default of 600 s.
    local ini=$dir/etc/lemonldap-ng.ini
    cat > "$ini" <<EOF
[all]
logLevel   = warn
logger     = Lemonldap::NG::Common::Logger::Std
userLogger = Lemonldap::NG::Common::Logger::Std

[configuration]
type        = File
dirName     = $dir/conf
localStorage = Cache::FileCache
localStorageOptions = { 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, 'directory_umask' => '007', 'cache_root' => '$dir/cache', 'cache_depth' => 3 }

[portal]
staticPrefix = /static
templateDir  = /usr/share/lemonldap-ng/portal/templates
languages    = en

[handler]
status = 0
useRedirectOnError = 1

[manager]
EOF
    DIR="$dir" PORT="$port" perl -MJSON::PP -e '
        local $/; open my $fh, "<", $ARGV[0] or die $!;
        my $c = JSON::PP->new->decode(<$fh>);
        my $d = $ENV{DIR};
        $c->{cfgNum} = 1;
        $c->{authentication} = "Demo"; $c->{userDB} = "Same"; $c->{passwordDB} = "Demo";
        $c->{globalStorage} = "Apache::Session::File";
        $c->{globalStorageOptions} = { Directory => "$d/sessions", LockDirectory => "$d/sessions/lock" };
        $c->{persistentStorage} = "Apache::Session::File";
        $c->{persistentStorageOptions} = { Directory => "$d/psessions", LockDirectory => "$d/psessions/lock" };
        $c->{localSessionStorageOptions}{cache_root} = "$d/cache";
        $c->{notificationStorageOptions}{dirName} = "$d/notifications";
        $c->{notification} = 0;
        # The demo enables self-registration, which needs a mail stack.
        $c->{registerDB} = "Null";
        $c->{portal} = "http://auth.example.com:$ENV{PORT}/";
        $c->{locationRules}{"test1.example.com"} = { default => "accept", "^/logout" => "logout_sso" };
        open my $out, ">", $ARGV[1] or die $!;
        print $out JSON::PP->new->canonical->encode($c);
    ' "$SHIPPED_CONF" "$dir/conf/lmConf-1.json"
    if [ "$(id -u)" = 0 ]; then
        chown -R "$user:$group" "$dir"/{conf,sessions,psessions,cache,notifications,run,logs}
        chown root:"$group" "$ini"
        chmod 640 "$ini"
    fi

    # The handler's nginx configuration as LemonLDAP::NG documents it, with
    # the bench's plain proxy (benches/load/upstream.rs) after it.
    local sock=$dir/run/llng.sock conf=$dir/nginx/nginx.conf
    cat > "$conf" <<EOF
worker_processes auto;
$([ "$(id -u)" = 0 ] && echo "user $user $group;")
pid $dir/run/nginx.pid;
error_log $dir/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/tmp/client_body;
  proxy_temp_path $dir/nginx/tmp/proxy;
  fastcgi_temp_path $dir/nginx/tmp/fastcgi;
  uwsgi_temp_path $dir/nginx/tmp/uwsgi;
  scgi_temp_path $dir/nginx/tmp/scgi;
  keepalive_requests 100000;
  upstream app { server $app; keepalive 64; }
  upstream llng { server unix:$sock; }
  server {
    listen 127.0.0.1:$port default_server;
    server_name test1.example.com;
    location = /lmauth {
      internal;
      include /etc/nginx/fastcgi_params;
      fastcgi_pass llng;
      fastcgi_pass_request_body off;
      fastcgi_param CONTENT_LENGTH "";
      fastcgi_param HOST \$http_host;
      fastcgi_param X_ORIGINAL_URI \$original_uri;
      fastcgi_param VHOSTTYPE Main;
    }
    location / {
      set \$original_uri \$uri\$is_args\$args;
      auth_request /lmauth;
      auth_request_set \$lmlocation \$upstream_http_location;
      auth_request_set \$authuser \$upstream_http_auth_user;
      error_page 401 \$lmlocation;
      proxy_set_header Auth-User \$authuser;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
  server {
    listen 127.0.0.1:$port;
    server_name auth.example.com;
    root /usr/share/lemonldap-ng/portal/htdocs/;
    if (\$uri !~ ^/((static|javascript|favicon).*|.*\.psgi)) {
      rewrite ^/(.*)\$ /index.psgi/\$1 break;
    }
    location ~ ^(?<sc>/.*\.psgi)(?:\$|/) {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass llng;
      fastcgi_param HTTP_HOST \$host;
      fastcgi_param LLTYPE psgi;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_split_path_info ^(.*\.psgi)(/.*)\$;
      fastcgi_param PATH_INFO \$fastcgi_path_info;
    }
  }
}
EOF

    local args=(--foreground -n "$NPROC" -p "$dir/run/llng.pid" -s "$sock")
    [ "$(id -u)" = 0 ] && args+=(-u "$user" -g "$group")
    cd "$dir"
    env LLNG_DEFAULTCONFFILE="$ini" LLNG_DEFAULTLOGGER=Lemonldap::NG::Common::Logger::Std \
        setsid "$LLNG_BIN" "${args[@]}" </dev/null >>"$dir/logs/llng.log" 2>&1 &
    echo $! >> "$dir/pids"
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    [ -S "$sock" ] || { tail -20 "$dir/logs/llng.log" >&2; die "no socket $sock"; }
    nginx -p "$dir/nginx" -c "$conf" -e "$dir/logs/nginx-error.log" >&2 || die "nginx did not start"
    for _ in $(seq 50); do [ -s "$dir/run/nginx.pid" ] && break; sleep 0.1; done
    [ -s "$dir/run/nginx.pid" ] || die "nginx wrote no pid"
    cat "$dir/run/nginx.pid" >> "$dir/pids"

    # Sign in through the portal: its form carries a one-time token.
    local base=http://127.0.0.1:$port cookie= form token headers
    for _ in $(seq 30); do
        form=$(curl -s -m 20 -H "Host: auth.example.com" "$base/" || true)
        token=$(printf '%s' "$form" | sed -n 's/.*name="token" value="\([^"]*\)".*/\1/p' | head -1)
        headers=$(curl -s -m 20 -o /dev/null -D - -H "Host: auth.example.com" -H "Accept: application/json" \
            --data-urlencode user=dwho --data-urlencode password=dwho \
            ${token:+--data-urlencode "token=$token"} "$base/" || true)
        cookie=$(printf '%s' "$headers" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: lemonldap=\([^;]*\).*/\1/p' | grep -v '^0$' | head -1)
        [ -n "$cookie" ] && break
        sleep 0.5
    done
    [ -n "$cookie" ] || { tail -20 "$dir/logs/llng.log" >&2; die "no session cookie from the portal"; }
    echo "COOKIE=lemonldap=$cookie"
}

case "${1:-}" in
    --install) install ;;
    start) [ $# -eq 4 ] || die "usage: $0 start DIR APP NGINX_PORT"; start "$2" "$3" "$4" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 --install | start DIR APP NGINX_PORT | stop DIR" ;;
esac
