// Aligned text tables for the benchmark programs: the first row is the header, the
// first `leftAligned` columns are text (left-aligned), the rest numbers (right-aligned).
// The header is underlined unless `rule` is false (the `zfs list`-style tables of the CLI).

public enum TextTable {
    public static func render(_ rows: [[String]], leftAligned: Int = 2, rule: Bool = true) -> String {
        guard let header = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: header.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        return rows.enumerated().map { index, row in
            let line = row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return i < leftAligned ? cell + pad : pad + cell
            }.joined(separator: "  ")
            return index == 0 && rule ? line + "\n" + String(repeating: "-", count: line.count) : line
        }.joined(separator: "\n")
    }
}
