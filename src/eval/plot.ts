// A dependency-free SVG line chart: enough for loss curves in a markdown report.
export interface Series {
  name: string;
  points: [number, number][]; // (x, y)
  color: string;
  width?: number;
  dashed?: boolean;
  band?: [number, number, number][]; // (x, low, high): a shaded spread behind the line (e.g. min–max over seeds)
}

export function lineChartSvg(series: Series[], o: { title: string; xLabel: string; yLabel: string; width?: number; height?: number; yMax?: number; hLine?: number }): string {
  const W = o.width ?? 720, H = o.height ?? 420, L = 60, R = 170, Tp = 40, B = 50;
  const all = series.flatMap((s) => [...s.points, ...(s.band ?? []).flatMap(([x, lo, hi]) => [[x, lo], [x, hi]] as [number, number][])]);
  const xMax = Math.max(...all.map((p) => p[0]), 1);
  const yMin = Math.min(...all.map((p) => p[1]), o.hLine ?? Infinity);
  const yMax = o.yMax ?? Math.max(...all.map((p) => p[1]));
  const y0 = Math.floor(yMin * 2) / 2, y1 = Math.ceil(yMax * 2) / 2;
  const sx = (x: number) => L + (x / xMax) * (W - L - R);
  const sy = (y: number) => Tp + (1 - (Math.min(y, y1) - y0) / (y1 - y0 || 1)) * (H - Tp - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = y0 + ((y1 - y0) * i) / 5, x = Math.round((xMax * i) / 5);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/>`);
    out.push(`<text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end">${y.toFixed(2)}</text>`);
    out.push(`<text x="${sx(x)}" y="${H - B + 18}" text-anchor="middle">${x}</text>`);
  }
  out.push(`<line x1="${L}" x2="${L}" y1="${Tp}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${(Tp + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(Tp + H - B) / 2})">${esc(o.yLabel)}</text>`);
  if (o.hLine !== undefined) {
    out.push(`<line x1="${L}" x2="${W - R}" y1="${sy(o.hLine)}" y2="${sy(o.hLine)}" stroke="#999" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${W - R - 4}" y="${sy(o.hLine) - 4}" text-anchor="end" fill="#666">${o.hLine}</text>`);
  }
  // bands first, so every line is drawn over them
  for (const s of series) {
    if (!s.band?.length) continue;
    const upper = s.band.map(([x, , hi], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(hi).toFixed(1)}`).join('');
    const lower = [...s.band].reverse().map(([x, lo]) => `L${sx(x).toFixed(1)},${sy(lo).toFixed(1)}`).join('');
    out.push(`<path d="${upper}${lower}Z" fill="${s.color}" fill-opacity="0.18" stroke="none"/>`);
  }
  series.forEach((s, i) => {
    const d = s.points.map(([x, y], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    const ly = Tp + 10 + i * 18;
    out.push(`<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="${s.width ?? 2}"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    out.push(`<text x="${W - R + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
