# SPDX-License-Identifier: Apache-2.0
# Called by bench/bench.py:
#   gnuplot -e "hitsfile='...'; otherfile='...'; outfile='...'; charttitle='...'" chart.gp
# hitsfile (may be ''): per hit workload, each peer's figure over the better of nginx auto and
#   the incumbent (columns: label, regcache, incumbent, nginx auto, nginx 1), so 1 is that peer.
# otherfile (may be ''): per other workload, how many times better regcache does than the
#   incumbent (columns: label, ratio).
# Both panels on a log scale; with both files, hits above, the rest below.
both = (hitsfile ne "" && otherfile ne "")
set terminal svg size 1500,(both ? 1150 : 620) dynamic enhanced font "sans,11" background rgb "white"
set output outfile
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set grid ytics
set xtics rotate by 40 right noenhanced nomirror font "sans,9"
set key top center horizontal noenhanced
set bmargin 11
set lmargin 14
if (both) { set multiplot layout 2,1 title charttitle noenhanced } else { set title charttitle noenhanced }

if (hitsfile ne "") {
    set ylabel "figure / the better of nginx auto and incumbent (log; 1 = that peer)"
    set yrange [0.001:30]
    set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "#444444" front
    if (both) { set title "hits: req/s or MB/s of every peer" }
    plot hitsfile using 2:xtic(1) title "regcache" lc rgb "#2ca02c", \
         '' using 3 title "incumbent (docker-registry 2.8; hosted: plain registry)" lc rgb "#1f77b4", \
         '' using 4 title "nginx auto (static files, sendfile)" lc rgb "#ff7f0e", \
         '' using 5 title "nginx 1 worker" lc rgb "#ffbb78"
    unset arrow 1
}
if (otherfile ne "") {
    set ylabel "times better than the incumbent (log; 1 = equal)"
    set yrange [0.1:*]
    set key top right
    set arrow 2 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "#444444" front
    if (both) { set title "pulls, memory, upstream faults: regcache vs incumbent" }
    plot otherfile using 2:xtic(1) title "regcache vs incumbent (docker-registry 2.8 proxy)" lc rgb "#1f77b4"
}
if (both) { unset multiplot }
