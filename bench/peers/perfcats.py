"""Groups perf stacks (one sample per line, innermost frame first, as bench/peers/perf.sh
writes them) by the component of tilegate's tile path they belong to; a sample counts for the
first group in the list that one of its frames matches."""
import re,collections,sys
stacks=sys.argv[1]
cats=[('SQLite tile read: prepare (parse, codegen)',r'_sqlite3LockAndPrepare|sqlite3Prepare|_sqlite3RunParser|_sqlite3Parser'),
('SQLite tile read: step/bind/column/finalize',r'Xsqlite3_step|Xsqlite3_bind|Xsqlite3_column|Xsqlite3_finalize|Xsqlite3_reset'),
('SQLite tile read: database/sql + driver glue',r'mbtiles\.\(\*Pool\)\.Tile'),
('response write (syscall write, loopback)',r'^syscall\.write$|internal/poll\.\(\*FD\)\.Write'),
('request read (syscall read)',r'internal/poll\.\(\*FD\)\.Read'),
('request validation (kin-openapi + queryRules)',r'server\.\(\*Server\)\.validate'),
('credential check (token/key)',r'server\.\(\*Server\)\.authorize|server\.parseCreds'),
('HTTP parse (readRequest)',r'net/http\.\(\*conn\)\.readRequest'),
('HTTP headers/finish (net/http)',r'net/http\.\(\*response\)|net/http\.Header|finishRequest|net/http\.\(\*chunkWriter\)'),
('GC (background mark, sweep, assist)',r'gcBgMarkWorker|bgsweep|gcAssistAlloc|gcDrain|bgscavenge'),
('echo + tilegate middleware/handler (rest)',r'echo/v4|tilegate/server'),
('scheduler/netpoll/idle',r'runtime\.(schedule|findRunnable|netpoll|mcall|park_m|gopark)|epoll'),
]
tot=0;c=collections.Counter()
for line in open(stacks):
    fr=line.split(); tot+=1
    for name,pat in cats:
        if any(re.search(pat,f) for f in fr):
            c[name]+=1;break
    else: c['other']+=1
for name,_ in cats+[('other','')]:
    print(f"{name:50s} {100*c[name]/tot:5.1f}%")
print('samples',tot)
