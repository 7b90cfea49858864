/// Reading an LV through imgmap's own targets, as compose would: for an LV whose bytes need a target's
/// logic (thin, cache, snapshot, raid4/5/6/10, mirror), probe loads its own dump as it stands (the
/// devices built so far, lower first) with the LV's device as the top, and reads the LV through the
/// engine's sector map, so partition tables, PVs and LUKS headers inside are found. The images are
/// opened once more for the engine, read-only; every byte it reads of them is counted in `bytes_read`.
extension Prober {
    /// The dump so far as the engine loads it: crypt lines with their volume key (probe keeps the
    /// keyed line in memory when the printed one shows zeros).
    func dumpForEngine() -> String {
        var out = ""
        for device in devices {
            for line in keyedLines[device.name] ?? device.lines { out += "\(device.name): \(line.text)\n" }
        }
        return out
    }

    /// Puts device `name` of the dump (an LV's, `vg/lv` in messages) on the worklist, read through the
    /// engine. A load the targets refuse (a corrupt pool's metadata, say) is returned as the reason and
    /// noted on the LV; its lines stay in the dump.
    func readThrough(_ name: String, lv: String, below depth: Int) -> String? {
        let text = Array(dumpForEngine().utf8)
        var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "probe dump")], top: name))
        loader.readTable = { _ in text }
        let counter = self.counter
        loader.openImage = { path throws(IOFailure) in
            if let file = counter.engineImages[path] { return file }
            let file = try ImageFile(openForReading: path, nonBlocking: true)
            counter.engineImages[path] = file
            return file
        }
        do {
            let loaded = try loader.load()
            let reader = MapReader(map: SectorMap(top: loaded.top), onError: .fail)
            worklist.append(ProbeVolume(name: name, size: loaded.top.size.bytes, layout: .mapped(reader, depth: depth), counter: counter))
            return nil
        } catch {
            let reason = "\(error)"
            notes.append("LV \(lv): not read through: \(reason)")
            return reason
        }
    }
}
