# SPDX-License-Identifier: Apache-2.0
# Grouped bars: how many times better regcache does than each peer, per workload (log scale).
# Called by bench/bench.py: gnuplot -e "datafile='...'; outfile='...'; charttitle='...'" chart.gp
set terminal svg size 1100,560 dynamic enhanced font "sans,11" background rgb "white"
set output outfile
set title charttitle noenhanced
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [0.1:*]
set ylabel "times better than the peer (log scale; 1 = equal)"
set grid ytics
set xtics rotate by 35 right noenhanced nomirror
set key top right noenhanced
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "#444444"
set bmargin 8
plot datafile using 2:xtic(1) title "regcache vs incumbent (docker-registry 2.8 proxy)" lc rgb "#1f77b4", \
     '' using 3 title "regcache vs nginx (static files, sendfile)" lc rgb "#ff7f0e"
